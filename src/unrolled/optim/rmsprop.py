"""RMSprop (optionally centered, with momentum and L2 weight decay), as torch.optim.RMSprop.

For each parameter, with g its gradient, v the running mean of g², m the running mean of g
(centered only) and b the momentum buffer:

    g = g + weight_decay * p
    v = alpha * v + (1 - alpha) * g²
    m = m + (1 - alpha) * (g - m)                        (centered)
    s = sqrt(v - m²) + eps   (centered)   or   s = sqrt(v) + eps
    b = momentum * b + g / s;  p = p - lr * b            (momentum > 0)
    p = p - lr * g / s                                   (otherwise)
"""
from __future__ import annotations

import numpy as np

from ..core.module import Parameter
from .optimizer import Optimizer, check_range, lerp_


class RMSprop(Optimizer):
    def __init__(self, params, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=bool(centered)))

    def _validate(self, group: dict) -> None:
        super()._validate(group)
        check_range("RMSprop", "alpha", group["alpha"], 0.0, 1.0)
        check_range("RMSprop", "eps", group["eps"], 0.0)
        check_range("RMSprop", "weight_decay", group["weight_decay"], 0.0)
        check_range("RMSprop", "momentum", group["momentum"], 0.0)

    def _init_state(self, p: Parameter, group: dict) -> dict[str, np.ndarray]:
        state = super()._init_state(p, group)
        state["square_avg"] = np.zeros_like(p.data)
        if group["momentum"] > 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        if group["centered"]:
            state["grad_avg"] = np.zeros_like(p.data)
        return state

    def _update(self, p: Parameter, state: dict[str, np.ndarray], group: dict) -> None:
        lr, alpha, eps = group["lr"], group["alpha"], group["eps"]
        state["step"] += 1
        g = p.grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        v = state["square_avg"]
        v *= alpha
        v += (1.0 - alpha) * g * g
        if group["centered"]:
            m = lerp_(state["grad_avg"], g, 1.0 - alpha)
            s = v - m * m
            np.sqrt(s, out=s)
        else:
            s = np.sqrt(v)
        s += eps
        if group["momentum"] > 0:
            b = state["momentum_buffer"]
            b *= group["momentum"]
            b += g / s
            p.data -= lr * b
        else:
            p.data += (-lr * g) / s
