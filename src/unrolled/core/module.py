"""Parameter and Module: the two objects every layer is made of.

A Module owns Parameters (arrays with a gradient beside them) and sub-Modules, found by walking
its attributes, so nothing needs registering. Differentiation is by hand and by pairs:

    y = m(x)          # forward pushes what backward needs onto m's cache stack
    dx = m.backward(dy)   # backward pops the newest cache, accumulates .grad, returns dx

A module called k times in one forward pass is back-propagated k times, newest first, exactly as
reverse-mode differentiation would. Caches are kept only while the module is training and
gradients are enabled: in `eval()` mode or inside `no_grad()` forward passes keep nothing.
"""
from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict
from typing import Iterator

import numpy as np

from .checks import check_float_dtype

_GRAD_ENABLED = True


@contextlib.contextmanager
def no_grad():
    """Inference mode: forward passes inside keep no backward caches."""
    global _GRAD_ENABLED
    previous, _GRAD_ENABLED = _GRAD_ENABLED, False
    try:
        yield
    finally:
        _GRAD_ENABLED = previous


def is_grad_enabled() -> bool:
    return _GRAD_ENABLED


class Parameter:
    """A trainable array `.data` with its gradient `.grad` (same shape, same dtype).

    Gradients accumulate (`+=`) until `zero_grad()`: a weight used at every time step, or tied
    between two layers, just works.
    """

    __slots__ = ("data", "grad")

    def __init__(self, data: np.ndarray):
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad[...] = 0

    def __repr__(self) -> str:
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


def _some(names: list[str], shown: int = 3) -> str:
    """'a', 'b', 'c' (and 4 more): a list of names short enough for a one-sentence error."""
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(f"'{n}'" for n in names[:shown]) + more


def _all_or_nothing(backward):
    """backward, giving back the forward pass it took when it refuses its arguments (a ValueError)
    before any part of it ran, so that a corrected call still finds that forward pass. Once a
    sub-module has taken its own cache, or on any other error, nothing is given back."""
    @functools.wraps(backward)
    def guarded(self, *args, **kwargs):
        depth, top = len(self._cache), self._cache[-1] if self._cache else None
        inner = [(m, len(m._cache)) for m in self.modules() if m is not self]
        try:
            return backward(self, *args, **kwargs)
        except ValueError:
            untouched = all(len(m._cache) == n for m, n in inner)
            if untouched and depth and len(self._cache) == depth - 1:
                self._cache.append(top)
            raise
    return guarded


class Module:
    """Base class of every layer and model.

    Subclasses set Parameters and sub-Modules as attributes (lists and tuples of Modules work
    too), implement `forward(...)` and `backward(...)`, and use `_save(...)` / `_restore()` for
    the backward cache.
    """

    def __init__(self):
        self.training = True
        self._cache: list = []

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "backward" in vars(cls):
            cls.backward = _all_or_nothing(vars(cls)["backward"])

    # ----- calling and the backward cache ---------------------------------------------------

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement forward().")

    def backward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not implement backward().")

    @property
    def recording(self) -> bool:
        """True when a forward pass must keep what its backward pass needs."""
        return self.training and _GRAD_ENABLED

    def _save(self, cache) -> None:
        if self.recording:
            self._cache.append(cache)

    def _read_only(self, y: np.ndarray) -> np.ndarray:
        """y, an output whose memory backward reads, as a read-only view while recording: changing
        it in place, which would change the gradients, raises instead of corrupting them."""
        if not self.recording:
            return y
        y = y.view()
        y.flags.writeable = False
        return y

    def _restore(self):
        if not self._cache:
            raise ValueError(
                f"{type(self).__name__}.backward() needs a matching forward() in training mode "
                "with gradients enabled, but no forward pass is waiting to be back-propagated."
            )
        return self._cache.pop()

    def clear_cache(self) -> None:
        """Drop every pending backward cache in this module and its children."""
        for m in self.modules():
            m._cache.clear()

    # ----- walking the tree -----------------------------------------------------------------

    def _children(self) -> Iterator[tuple[str, object]]:
        for name, value in vars(self).items():
            if name.startswith("_"):
                continue
            if isinstance(value, (Parameter, Module)):
                yield name, value
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    if isinstance(item, (Parameter, Module)):
                        yield f"{name}.{i}", item

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._children():
            if isinstance(child, Module):
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Every Parameter with its dotted name, each once (a tied weight under its first name)."""
        seen: set[int] = set()
        for name, p in self._named_parameters(prefix):
            if id(p) not in seen:
                seen.add(id(p))
                yield name, p

    def _named_parameters(self, prefix: str):
        for name, child in self._children():
            full = f"{prefix}.{name}" if prefix else name
            if isinstance(child, Parameter):
                yield full, child
            else:
                yield from child._named_parameters(full)

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def num_parameters(self) -> int:
        return int(sum(p.data.size for p in self.parameters()))

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.zero_grad()

    # ----- modes and dtype ------------------------------------------------------------------

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            m.training = mode
            if not mode:
                m._cache.clear()
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def to(self, dtype) -> "Module":
        """Cast every parameter (and its gradient) to `dtype` (float32 or float64), in place; returns self."""
        dtype = check_float_dtype(dtype)
        for m in self.modules():
            m._cache.clear()
            if hasattr(m, "dtype"):
                m.dtype = dtype
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = np.zeros_like(p.data)
        return self

    def double(self) -> "Module":
        return self.to(np.float64)

    def float(self) -> "Module":
        return self.to(np.float32)

    # ----- saving and loading ---------------------------------------------------------------

    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter under its dotted name (PyTorch's names where PyTorch has the
        layer); a tied weight under each of its names, as torch lists it."""
        return OrderedDict((name, p.data.copy()) for name, p in self._named_parameters(""))

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy arrays into the parameters; returns (missing, unexpected) names.

        Values may be NumPy arrays or anything with `.numpy()` (a torch tensor on the CPU). With
        `strict=True` a missing or unexpected name is an error; a shape mismatch always is. A tied
        weight needs only one of its names.
        """
        named = list(self._named_parameters(""))
        params = dict(named)
        given = {id(p) for name, p in named if name in state}
        missing = [k for k, p in named if k not in state and id(p) not in given]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise ValueError(f"{type(self).__name__}.load_state_dict " + " and ".join(
                f"{what} {_some(names)}" for what, names in (("is missing", missing), ("was given unexpected", unexpected))
                if names) + ".")
        arrays, first_name = {}, {}
        for name, p in params.items():
            if name not in state:
                continue
            value = state[name]
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            value = np.asarray(value)
            if value.shape != p.data.shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict expected '{name}' of shape "
                    f"{p.data.shape}, but was given shape {value.shape}."
                )
            twin = first_name.setdefault(id(p), name)
            if twin != name and not np.array_equal(arrays[twin], value):
                raise ValueError(f"{type(self).__name__}.load_state_dict was given different arrays for '{twin}' "
                                 f"and '{name}', which name one tied weight.")
            arrays[name] = value
        for name, value in arrays.items():  # only after every check passed: all or nothing
            params[name].data[...] = value
        return missing, unexpected

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = [(n, c) for n, c in self._children() if isinstance(c, Module)]
        for name, child in children:
            body = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {body}")
        return ("\n".join(lines) + "\n)") if children else lines[0] + ")"
