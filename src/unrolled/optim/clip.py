"""Gradient clipping, in place, as torch.nn.utils.clip_grad_norm_ / clip_grad_value_.

clip_grad_norm scales every gradient by min(1, max_norm / (total_norm + 1e-6)), where total_norm
is the p-norm of all gradients taken together (the max-abs entry for norm_type=inf); it returns
total_norm as it was before clipping. clip_grad_value clamps every entry to [-clip_value, clip_value].
"""
from __future__ import annotations

import numpy as np

from ..core.module import Parameter
from .optimizer import check_range


def _grads(parameters) -> list[np.ndarray]:
    params = [parameters] if isinstance(parameters, Parameter) else list(parameters)
    for p in params:
        if not isinstance(p, Parameter):
            raise ValueError(f"gradient clipping takes unrolled.Parameter objects, but was given a {type(p).__name__}.")
    return [p.grad for p in params]


def clip_grad_norm(parameters, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients together so their total `norm_type`-norm is at most `max_norm`.

    Returns the total norm before clipping (0.0 for no parameters). Gradients are always
    multiplied, by exactly 1 when they are within the bound; a NaN or infinite total norm spreads
    to every gradient, as in torch.
    """
    check_range("clip_grad_norm", "max_norm", float(max_norm), 0.0)
    norm_type = float(norm_type)
    if not (norm_type > 0):
        raise ValueError(f"clip_grad_norm norm_type must be a positive number or inf, but was given {norm_type!r}.")
    grads = _grads(parameters)
    if not grads:
        return 0.0
    norms = np.array([np.linalg.norm(g.reshape(-1), norm_type) for g in grads])  # (n_params,)
    total = np.linalg.norm(norms, norm_type)
    coef = np.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= coef
    return float(total)


def clip_grad_value(parameters, clip_value: float) -> None:
    """Clamp every gradient entry to [-clip_value, clip_value], in place."""
    check_range("clip_grad_value", "clip_value", float(clip_value), 0.0)
    for g in _grads(parameters):
        np.clip(g, -clip_value, clip_value, out=g)
