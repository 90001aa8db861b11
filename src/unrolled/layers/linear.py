"""Linear: y = x W^T + b over the last axis, with torch's layout, initialisation and names."""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import check_float_dtype, check_shape, check_sizes
from ..core.functional import as_float_array
from ..core.module import Module, Parameter


class Linear(Module):
    """torch.nn.Linear: `weight` (out_features, in_features), `bias` (out_features,).

    Both drawn from U(-1/sqrt(in_features), 1/sqrt(in_features)) as torch does. The input may have
    any leading dimensions: (..., in_features) -> (..., out_features).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32, seed=None):
        super().__init__()
        check_sizes(in_features=in_features, out_features=out_features)
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.dtype = check_float_dtype(dtype)
        rng = init.as_generator(seed)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(init.uniform((out_features, in_features), bound, rng, self.dtype))
        self.bias = Parameter(init.uniform((out_features,), bound, rng, self.dtype)) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = as_float_array(x, "input", self.dtype, min_ndim=1)
        if x.shape[-1] != self.in_features:
            raise ValueError(f"input must have shape (..., {self.in_features}), but was given shape {x.shape}.")
        x2 = x.reshape(-1, self.in_features)                      # (N, in)
        y = x2 @ self.weight.data.T                               # (N, out)
        if self.bias is not None:
            y += self.bias.data
        y = y.reshape(*x.shape[:-1], self.out_features)           # (..., out)
        self._save((x2, y.shape))
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        x2, out_shape = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, out_shape, "dy")
        dy2 = dy.reshape(x2.shape[0], self.out_features)          # (N, out)
        self.weight.grad += dy2.T @ x2                            # (out, in)
        if self.bias is not None:
            self.bias.grad += dy2.sum(axis=0)
        return (dy2 @ self.weight.data).reshape(*out_shape[:-1], self.in_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
