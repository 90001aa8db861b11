"""The group lasso's proximal step: shrink each group of weights toward zero, to exactly zero at most.

    group_lasso_(W[:, 1:], lr * strength)      # after the optimiser's step; groups are W's columns

For the penalty strength * sum_g |w_g|_2 (Yuan and Lin 2006), the proximal step after a gradient
step of size lr is

    w_g = w_g * max(0, 1 - lr * strength / |w_g|_2)

A group whose norm falls below lr * strength becomes exactly zero, so a column of input weights
that does not pay for its norm switches that input off, where L2 decay would only make it smaller.
After an Adam step it is a decoupled shrinkage, as AdamW's weight decay is: Adam moves each weight
by about lr (its normalised step), so a column is switched off when the gradient's pull on it
stays weaker than `strength` in those units.
"""
from __future__ import annotations

import numpy as np


def group_lasso_(weight: np.ndarray, threshold: float) -> None:
    """Shrink every column of the 2-D `weight` (in place) by `threshold` in Euclidean norm."""
    if not threshold >= 0:
        raise ValueError(f"the group lasso's threshold must be a number >= 0, but was given {threshold!r}.")
    norms = np.linalg.norm(weight.astype(np.float64), axis=0)              # (F,)
    keep = np.where(norms > threshold, 1.0 - threshold / np.where(norms > 0, norms, 1.0), 0.0)
    weight *= keep.astype(weight.dtype)
