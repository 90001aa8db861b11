"""Positional encodings added to time-major token embeddings (T, B, E): sinusoidal or learned.

    pos = SinusoidalPositionalEncoding(d_model=64)      # or LearnedPositionalEmbedding(64, max_len=256)
    x = pos(embeddings, offset=t)       # adds the encodings of positions t .. t+T-1
    d_embeddings = pos.backward(dx)

`offset` is the position of the first row, for incremental decoding with a key/value cache.
"""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import check_float_dtype, check_shape, check_sizes
from ..core.functional import as_float_array
from ..core.module import Module, Parameter


class _Positions(Module):
    """Shared checks: x (T, B, d_model) with offset + T <= max_len."""

    def _check(self, x, offset: int) -> np.ndarray:
        x = as_float_array(x, "input", self.dtype)
        check_shape(x, (None, None, self.d_model), "input")
        if not isinstance(offset, (int, np.integer)) or offset < 0 or offset + x.shape[0] > self.max_len:
            raise ValueError(f"positions offset .. offset + T - 1 must lie in 0..{self.max_len - 1} (max_len), but "
                             f"were given offset {offset!r} and T = {x.shape[0]}.")
        return x

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, max_len={self.max_len}"


class SinusoidalPositionalEncoding(_Positions):
    """Vaswani et al. (2017): PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)).

    No parameters; backward passes the gradient through unchanged.
    """

    def __init__(self, d_model: int, max_len: int = 5000, dtype=np.float32):
        super().__init__()
        check_sizes(d_model=d_model, max_len=max_len)
        self.d_model, self.max_len, self.dtype = int(d_model), int(max_len), check_float_dtype(dtype)
        position = np.arange(max_len)[:, None]                                   # (P, 1)
        rate = np.exp(-np.log(10000.0) * np.arange(0, d_model, 2) / d_model)     # (ceil(d/2),)
        self._table = np.zeros((max_len, d_model))                               # (P, d), float64
        self._table[:, 0::2] = np.sin(position * rate)
        self._table[:, 1::2] = np.cos(position * rate[: d_model // 2])

    def encoding(self, offset: int, length: int) -> np.ndarray:
        """(length, d_model): the encodings of positions offset .. offset + length - 1."""
        return self._table[offset:offset + length].astype(self.dtype)

    def forward(self, x, offset: int = 0) -> np.ndarray:
        x = self._check(x, offset)
        self._save(x.shape)
        return x + self.encoding(offset, x.shape[0])[:, None, :]

    def backward(self, dy) -> np.ndarray:
        shape = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, shape, "dy")
        return dy


class LearnedPositionalEmbedding(_Positions):
    """A trainable `weight` (max_len, d_model), one row per position, drawn from N(0, 1) like
    torch.nn.Embedding; backward adds each position's gradient, summed over the batch, into its row."""

    def __init__(self, d_model: int, max_len: int = 512, dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(d_model=d_model, max_len=max_len)
        self.d_model, self.max_len, self.dtype = int(d_model), int(max_len), check_float_dtype(dtype)
        self.weight = Parameter(init.as_generator(seed).standard_normal((max_len, d_model)).astype(self.dtype))

    def forward(self, x, offset: int = 0) -> np.ndarray:
        x = self._check(x, offset)
        self._save((x.shape, offset))
        return x + self.weight.data[offset:offset + x.shape[0], None, :]

    def backward(self, dy) -> np.ndarray:
        shape, offset = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, shape, "dy")
        self.weight.grad[offset:offset + shape[0]] += dy.sum(axis=1)             # (T, d)
        return dy


POSITIONS = ("sinusoidal", "learned")


def positional_encoding(kind: str, d_model: int, max_len: int, dtype=np.float32, seed=None) -> _Positions:
    """'sinusoidal' or 'learned' positions for `max_len` positions."""
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len, dtype)
    if kind == "learned":
        return LearnedPositionalEmbedding(d_model, max_len, dtype, seed)
    raise ValueError(f"positions must be one of {POSITIONS}, but was given {kind!r}.")
