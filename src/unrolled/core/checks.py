"""Input validation: every bad input gets one ValueError sentence saying what was expected and given."""
from __future__ import annotations

import numpy as np


def check_sizes(**sizes) -> None:
    """Each keyword a positive integer (not a bool): check_sizes(hidden_size=64, num_layers=2)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, but was given {value!r}.")


def check_flags(**flags) -> None:
    """Each keyword True or False (a NumPy bool too): check_flags(bias=True, add_zero_attn=False)."""
    for name, value in flags.items():
        if not isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, but was given {value!r}.")


def check_float_dtype(dtype) -> np.dtype:
    """The layers compute in float32 or float64; anything else is refused."""
    try:
        checked = np.dtype(dtype)
    except TypeError:
        checked = None
    if checked not in (np.float32, np.float64):
        shown = checked if checked is not None else repr(dtype)
        raise ValueError(f"dtype must be float32 or float64, but was given {shown}.")
    return checked


def counted(n: int, noun: str) -> str:
    """`n` and the noun, plural unless n is 1: counted(1, "row") -> "1 row", counted(3, "row") -> "3 rows"."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def as_array(x, name: str, ndim: int | tuple[int, ...], dtype=None) -> np.ndarray:
    """`x` as an ndarray with `ndim` dimensions (and `dtype` if given, which it must already have)."""
    if not isinstance(x, np.ndarray):
        if hasattr(x, "detach"):
            raise ValueError(f"{name} must be a NumPy array, but was given a {type(x).__name__}; call .numpy() first.")
        x = np.asarray(x)
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if x.ndim not in dims:
        want = " or ".join(str(d) for d in dims)
        raise ValueError(f"{name} must have {want} dimensions, but was given shape {x.shape}.")
    if dtype is not None and x.dtype != np.dtype(dtype):
        raise ValueError(f"{name} must have dtype {np.dtype(dtype).name} like the layer's weights, but was given {x.dtype}.")
    return x


def check_shape(x: np.ndarray, expected: tuple, name: str) -> None:
    """`expected` may hold None for a dimension that can be anything."""
    if x.ndim != len(expected) or any(e is not None and e != s for e, s in zip(expected, x.shape)):
        shown = "(" + ", ".join("any" if e is None else str(e) for e in expected) + (",)" if len(expected) == 1 else ")")
        raise ValueError(f"{name} must have shape {shown}, but was given shape {x.shape}.")


def check_lengths(lengths, batch: int, max_len: int) -> np.ndarray:
    """Per-sequence lengths as int64 (B,), each in 1..max_len."""
    try:
        lengths = np.asarray(lengths)
    except ValueError:                                      # a ragged list
        raise ValueError(f"lengths must be {counted(batch, 'integer')} (one per sequence), but was given a ragged "
                         "sequence.") from None
    if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be {counted(batch, 'integer')} (one per sequence), but was given "
                         f"{lengths.dtype} of shape {lengths.shape}.")
    if lengths.size and (lengths.min() < 1 or lengths.max() > max_len):
        raise ValueError(f"lengths must lie in 1..{max_len} (the padded length), but range from {lengths.min()} to {lengths.max()}.")
    return lengths.astype(np.int64)
