"""Adam (L2 weight decay folded into the gradient) and AdamW (decoupled weight decay), as torch.optim.

For each parameter, with g its gradient, m and v the running means of g and g², and t the step
count (1 at the first step):

    p = p * (1 - lr * weight_decay)                        (AdamW)
    g = g + weight_decay * p                               (Adam)
    m = m + (1 - beta1) * (g - m)
    v = beta2 * v + (1 - beta2) * g²
    v_max = max(v_max, v); use v_max in place of v         (amsgrad)
    p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""
from __future__ import annotations

import numpy as np

from ..core.module import Parameter
from .optimizer import Optimizer, as_hyper, check_range, lerp_


class Adam(Optimizer):
    decoupled_weight_decay = False

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        betas = as_hyper((0.9, 0.999), betas, f"{type(self).__name__} betas")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=bool(amsgrad)))

    def _validate(self, group: dict) -> None:
        owner = type(self).__name__
        super()._validate(group)
        check_range(owner, "betas[0]", group["betas"][0], 0.0, 1.0)
        check_range(owner, "betas[1]", group["betas"][1], 0.0, 1.0)
        check_range(owner, "eps", group["eps"], 0.0)
        check_range(owner, "weight_decay", group["weight_decay"], 0.0)

    def _init_state(self, p: Parameter, group: dict) -> dict[str, np.ndarray]:
        state = super()._init_state(p, group)
        state["exp_avg"] = np.zeros_like(p.data)
        state["exp_avg_sq"] = np.zeros_like(p.data)
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = np.zeros_like(p.data)
        return state

    def _update(self, p: Parameter, state: dict[str, np.ndarray], group: dict) -> None:
        lr, weight_decay = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        state["step"] += 1
        t = int(state["step"])
        g = p.grad
        if weight_decay != 0:
            if self.decoupled_weight_decay:
                p.data *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p.data
        m = lerp_(state["exp_avg"], g, 1 - beta1)
        v = state["exp_avg_sq"]
        v *= beta2
        v += (1 - beta2) * g * g
        if group["amsgrad"]:
            v = np.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
        step_size = lr / (1 - beta1 ** t)
        denom = np.sqrt(v)
        denom /= (1 - beta2 ** t) ** 0.5
        denom += group["eps"]
        p.data += (-step_size * m) / denom


class AdamW(Adam):
    decoupled_weight_decay = True

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)
