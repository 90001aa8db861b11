"""Adagrad (with learning-rate decay and L2 weight decay), as torch.optim.Adagrad.

For each parameter, with g its gradient, s the running sum of g² (starting at
initial_accumulator_value) and t the step count (1 at the first step):

    g = g + weight_decay * p
    s = s + g²
    p = p - lr / (1 + (t - 1) * lr_decay) * g / (sqrt(s) + eps)
"""
from __future__ import annotations

import numpy as np

from ..core.module import Parameter
from .optimizer import Optimizer, check_range


class Adagrad(Optimizer):
    def __init__(self, params, lr: float = 1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10):
        super().__init__(params, dict(lr=lr, lr_decay=lr_decay, weight_decay=weight_decay,
                                      initial_accumulator_value=initial_accumulator_value, eps=eps))

    def _validate(self, group: dict) -> None:
        super()._validate(group)
        check_range("Adagrad", "lr_decay", group["lr_decay"], 0.0)
        check_range("Adagrad", "weight_decay", group["weight_decay"], 0.0)
        check_range("Adagrad", "initial_accumulator_value", group["initial_accumulator_value"], 0.0)
        check_range("Adagrad", "eps", group["eps"], 0.0)

    def _init_state(self, p: Parameter, group: dict) -> dict[str, np.ndarray]:
        state = super()._init_state(p, group)
        state["sum"] = np.full_like(p.data, group["initial_accumulator_value"])
        return state

    def _update(self, p: Parameter, state: dict[str, np.ndarray], group: dict) -> None:
        state["step"] += 1
        t = int(state["step"])
        g = p.grad
        if group["weight_decay"] != 0:
            g = g + group["weight_decay"] * p.data
        clr = group["lr"] / (1 + (t - 1) * group["lr_decay"])
        s = state["sum"]
        s += g * g
        std = np.sqrt(s)
        std += group["eps"]
        p.data += (-clr * g) / std
