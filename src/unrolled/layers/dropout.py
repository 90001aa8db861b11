"""Dropout: inverted dropout with an explicit random generator."""
from __future__ import annotations

import numpy as np

from ..core import init
from ..core.checks import check_shape
from ..core.module import Module


class Dropout(Module):
    """Zero each element with probability p while training and scale the rest by 1/(1-p).

    The mask comes from this layer's own `np.random.Generator` (built from `seed`), so the same seed
    gives the same masks; it does not depend on the input's dtype. In eval mode, or with p == 0,
    the layer is the identity. backward multiplies by the same mask.
    """

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float, np.floating, np.integer)) or not 0 <= p < 1:
            raise ValueError(f"Dropout p must be a probability in [0, 1), but was given {p!r}.")
        self.p = float(p)
        self.rng = init.as_generator(seed)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if not self.training or self.p == 0:
            self._save((None, x.shape))
            return x
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"Dropout needs a floating-point input, but was given dtype {x.dtype}.")
        keep = self.rng.random(x.shape, dtype=np.float32) >= self.p           # (...,) bool
        mask = keep.astype(x.dtype) / np.asarray(1 - self.p, dtype=x.dtype)  # 0 or 1/(1-p)
        self._save((mask, x.shape))
        return x * mask

    def backward(self, dy: np.ndarray) -> np.ndarray:
        mask, shape = self._restore()
        dy = np.asarray(dy)
        check_shape(dy, shape, "dy")
        return dy if mask is None else dy * mask

    def extra_repr(self) -> str:
        return f"p={self.p}"
