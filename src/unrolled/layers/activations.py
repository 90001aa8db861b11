"""Activation modules: Tanh, Sigmoid, ReLU, GELU, Softmax, LogSoftmax (no parameters).

Each keeps one array for its backward pass: its output where the derivative is cheapest from the
output (tanh, sigmoid, softmax, log-softmax), its input otherwise (relu, gelu).
"""
from __future__ import annotations

import numpy as np

from ..core import functional as F
from ..core.checks import check_shape
from ..core.module import Module


class _Activation(Module):
    saves_output = True  # keep y for backward; False keeps x

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_float_array(x, "input")
        y = self._apply(x)
        self._save(y if self.saves_output else x)
        return self._read_only(y) if self.saves_output else y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        saved = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, saved.shape, "dy")
        return self._gradient(dy, saved)


class Tanh(_Activation):
    def _apply(self, x):
        return F.tanh(x)

    def _gradient(self, dy, y):
        return F.tanh_backward(dy, y)


class Sigmoid(_Activation):
    def _apply(self, x):
        return F.sigmoid(x)

    def _gradient(self, dy, y):
        return F.sigmoid_backward(dy, y)


class ReLU(_Activation):
    saves_output = False

    def _apply(self, x):
        return F.relu(x)

    def _gradient(self, dy, x):
        return F.relu_backward(dy, x)


class GELU(_Activation):
    """x * Phi(x), exact (`approximate='none'`) or with torch's tanh approximation (`'tanh'`)."""

    saves_output = False

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if approximate not in F.GELU_APPROXIMATIONS:
            raise ValueError(f"GELU approximate must be one of {F.GELU_APPROXIMATIONS}, but was given {approximate!r}.")
        self.approximate = approximate

    def _apply(self, x):
        return F.gelu(x, self.approximate)

    def _gradient(self, dy, x):
        return F.gelu_backward(dy, x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class _AlongDim(_Activation):
    """An activation over one axis, `dim` (the last by default)."""

    def __init__(self, dim: int = -1):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)):
            raise ValueError(f"dim must be an integer axis, but was given {dim!r}.")
        self.dim = int(dim)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = F.as_float_array(x, "input", min_ndim=1)
        if not -x.ndim <= self.dim < x.ndim:
            raise ValueError(f"dim must lie in {-x.ndim}..{x.ndim - 1} for an input of shape {x.shape}, but is {self.dim}.")
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_AlongDim):
    def _apply(self, x):
        return F.softmax(x, self.dim)

    def _gradient(self, dy, y):
        return F.softmax_backward(dy, y, self.dim)


class LogSoftmax(_AlongDim):
    def _apply(self, x):
        return F.log_softmax(x, self.dim)

    def _gradient(self, dy, y):
        return F.log_softmax_backward(dy, y, self.dim)
