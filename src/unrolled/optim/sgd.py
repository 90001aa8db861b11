"""SGD with momentum, dampening, Nesterov momentum and L2 weight decay, as torch.optim.SGD.

For each parameter, with g its gradient and b its momentum buffer:

    g = g + weight_decay * p
    b = g                                   at the first step
    b = momentum * b + (1 - dampening) * g  afterwards
    g = g + momentum * b   (nesterov)   or   g = b
    p = p - lr * g
"""
from __future__ import annotations

import numpy as np

from ..core.module import Parameter
from .optimizer import Optimizer, check_range


class SGD(Optimizer):
    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=bool(nesterov)))

    def _validate(self, group: dict) -> None:
        super()._validate(group)
        check_range("SGD", "momentum", group["momentum"], 0.0)
        check_range("SGD", "dampening", group["dampening"], 0.0, 1.0, high_open=False)
        check_range("SGD", "weight_decay", group["weight_decay"], 0.0)
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD nesterov=True needs momentum > 0 and dampening = 0, but was given "
                             f"momentum={group['momentum']!r} and dampening={group['dampening']!r}.")

    def _init_state(self, p: Parameter, group: dict) -> dict[str, np.ndarray]:
        state = super()._init_state(p, group)
        if group["momentum"] != 0:
            state["momentum_buffer"] = np.zeros_like(p.data)
        return state

    def _update(self, p: Parameter, state: dict[str, np.ndarray], group: dict) -> None:
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        g = p.grad
        if weight_decay != 0:
            g = g + weight_decay * p.data
        if momentum != 0:
            b = state["momentum_buffer"]
            if state["step"] == 0:
                b[...] = g
            else:
                b *= momentum
                b += (1.0 - group["dampening"]) * g
            g = g + momentum * b if group["nesterov"] else b
        state["step"] += 1
        p.data -= lr * g
