"""LayerNorm: normalise over the last dimensions, then scale and shift elementwise."""
from __future__ import annotations

import numpy as np

from ..core.checks import check_flags, check_float_dtype, check_shape
from ..core.functional import as_float_array
from ..core.module import Module, Parameter


class LayerNorm(Module):
    """torch.nn.LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing
    `normalized_shape` dimensions (biased variance), `weight` ones and `bias` zeros at first.

    `bias=False` (torch >= 2.1) keeps the scale without the shift: no `bias` parameter, in
    parameters() or state_dict(); `elementwise_affine=False` has neither.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True,
                 dtype=np.float32):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
        if not shape or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
            raise ValueError(f"normalized_shape must be a positive integer or a tuple of them, but was given {normalized_shape!r}.")
        if isinstance(eps, bool) or not isinstance(eps, (int, float, np.integer, np.floating)) or not eps > 0:
            raise ValueError(f"eps must be a positive number, but was given {eps!r}.")
        check_flags(bias=bias)                                      # a dtype here meant dtype=, before bias= came
        self.normalized_shape = tuple(int(n) for n in shape)
        self.eps = float(eps)
        self.dtype = check_float_dtype(dtype)
        self.weight = Parameter(np.ones(self.normalized_shape, self.dtype)) if elementwise_affine else None
        self.bias = Parameter(np.zeros(self.normalized_shape, self.dtype)) if elementwise_affine and bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        k = len(self.normalized_shape)
        x = as_float_array(x, "input", self.dtype)
        if x.ndim < k or x.shape[x.ndim - k:] != self.normalized_shape:
            raise ValueError(f"input must have shape (..., {', '.join(map(str, self.normalized_shape))}), "
                             f"but was given shape {x.shape}.")
        axes = tuple(range(x.ndim - k, x.ndim))
        mu = x.mean(axis=axes, keepdims=True)                      # (..., 1...)
        xc = x - mu
        rstd = 1.0 / np.sqrt((xc * xc).mean(axis=axes, keepdims=True) + self.eps)   # (..., 1...)
        xhat = xc * rstd                                          # (..., *normalized_shape)
        self._save((xhat, rstd, axes))
        if self.weight is None:
            return self._read_only(xhat)
        y = xhat * self.weight.data
        if self.bias is not None:
            y += self.bias.data
        return y

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xhat, rstd, axes = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, xhat.shape, "dy")
        if self.weight is None:
            dxhat = dy
        else:
            lead = tuple(range(dy.ndim - len(axes)))
            self.weight.grad += (dy * xhat).sum(axis=lead)
            if self.bias is not None:
                self.bias.grad += dy.sum(axis=lead)
            dxhat = dy * self.weight.data                         # (..., *normalized_shape)
        # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), means over the normalised axes
        return rstd * (dxhat - dxhat.mean(axis=axes, keepdims=True) - xhat * (dxhat * xhat).mean(axis=axes, keepdims=True))

    def extra_repr(self) -> str:
        no_bias = ", bias=False" if self.weight is not None and self.bias is None else ""
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}{no_bias}"
