"""Learning-rate schedules: each sets `group["lr"]` of an optimiser's param groups, as torch.optim.lr_scheduler.

    sched = CosineWarmup(opt, warmup_steps=100, total_steps=10_000)
    for batch in batches:
        ...; opt.step(); sched.step()

A schedule made from an optimiser records each group's current lr as its base lr and sets the lr
for step 0 at once; `step()` advances one step (ReduceLROnPlateau: `step(metric)`, once per
evaluation), `get_last_lr()` lists the lrs it set last. StepLR, ExponentialLR and CosineWarmup are
closed forms of the step count t (`last_epoch`, as torch calls it), with base lr b:

    StepLR         lr_t = b * gamma ** (t // step_size)
    ExponentialLR  lr_t = b * gamma ** t
    CosineWarmup   lr_t = b * t / W                                             for t < W
                   lr_t = min_lr + (b - min_lr) * (1 + cos(pi * (t - W) / (T - W))) / 2   for W <= t <= T
                   lr_t = min_lr                                                for t > T

(W = warmup_steps, T = total_steps: a linear rise from 0 that reaches b at t = W, then half a
cosine down to min_lr at t = T.) ReduceLROnPlateau multiplies the lrs by `factor` when the metric
has not improved for more than `patience` steps, as torch's does.

`state_dict()` is flat `{str: np.ndarray}` like the optimisers'. Loading a closed-form schedule's
state also sets the groups' lrs for its step, so the order of loading optimiser and schedule does
not matter; ReduceLROnPlateau's lrs live in the optimiser's own state.
"""
from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from .optimizer import Optimizer, check_range, check_state


def _check_optimizer(owner: str, optimizer) -> None:
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"{owner} schedules an unrolled.optim optimiser, but was given a {type(optimizer).__name__}.")


def _check_int(owner: str, name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{owner} {name} must be an integer >= {low}, but was given {value!r}.")
    return int(value)


class LRScheduler:
    """A schedule whose lr is a closed form of the step count: subclasses define `lr_at(t, base_lr)`."""

    def __init__(self, optimizer: Optimizer):
        _check_optimizer(type(self).__name__, optimizer)
        self.optimizer = optimizer
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def lr_at(self, t: int, base_lr: float) -> float:
        raise NotImplementedError(f"{type(self).__name__} does not implement lr_at().")

    def _apply(self) -> None:
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.lr_at(self.last_epoch, base_lr)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"last_epoch": np.asarray(self.last_epoch, dtype=np.int64),
                "base_lrs": np.asarray(self.base_lrs, dtype=np.float64)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the step count and base lrs, and set the groups' lrs for that step."""
        check_state(type(self).__name__, state, self.state_dict())
        self.last_epoch = int(state["last_epoch"])
        self.base_lrs = [float(b) for b in state["base_lrs"]]
        self._apply()


class StepLR(LRScheduler):
    """lr = base_lr * gamma ** (t // step_size)."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        self.step_size = _check_int("StepLR", "step_size", step_size, 1)
        check_range("StepLR", "gamma", gamma, 0.0)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma ** (t // self.step_size)


class ExponentialLR(LRScheduler):
    """lr = base_lr * gamma ** t."""

    def __init__(self, optimizer: Optimizer, gamma: float):
        check_range("ExponentialLR", "gamma", gamma, 0.0)
        self.gamma = float(gamma)
        super().__init__(optimizer)

    def lr_at(self, t: int, base_lr: float) -> float:
        return base_lr * self.gamma ** t


class CosineWarmup(LRScheduler):
    """Linear warm-up from 0 to base_lr over `warmup_steps`, then cosine down to `min_lr` at `total_steps`."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr: float = 0.0):
        self.warmup_steps = _check_int("CosineWarmup", "warmup_steps", warmup_steps, 0)
        self.total_steps = _check_int("CosineWarmup", "total_steps", total_steps, self.warmup_steps + 1)
        check_range("CosineWarmup", "min_lr", min_lr, 0.0)
        self.min_lr = float(min_lr)
        super().__init__(optimizer)

    def lr_at(self, t: int, base_lr: float) -> float:
        W, T, min_lr = self.warmup_steps, self.total_steps, self.min_lr
        if t < W:
            return base_lr * t / W
        if t > T:
            return min_lr
        return min_lr + (base_lr - min_lr) * (1 + math.cos(math.pi * (t - W) / (T - W))) / 2


class ReduceLROnPlateau:
    """Multiply every lr by `factor` (not below `min_lr`) after more than `patience` steps without improvement.

    A metric improves on the best so far when it is below best * (1 - threshold) ("min", "rel"),
    below best - threshold ("min", "abs"), above best * (1 + threshold) ("max", "rel") or above
    best + threshold ("max", "abs"). After a reduction, `cooldown` steps pass before bad steps
    count again; a reduction smaller than `eps` is skipped. `min_lr` is one float or one per group.
    """

    def __init__(self, optimizer: Optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0,
                 min_lr: float | list[float] = 0.0, eps: float = 1e-8):
        owner = "ReduceLROnPlateau"
        _check_optimizer(owner, optimizer)
        if mode not in ("min", "max"):
            raise ValueError(f"{owner} mode must be 'min' or 'max', but was given {mode!r}.")
        if threshold_mode not in ("rel", "abs"):
            raise ValueError(f"{owner} threshold_mode must be 'rel' or 'abs', but was given {threshold_mode!r}.")
        check_range(owner, "factor", factor, 0.0, 1.0)
        check_range(owner, "threshold", threshold, 0.0)
        check_range(owner, "eps", eps, 0.0)
        n_groups = len(optimizer.param_groups)
        min_lrs = list(min_lr) if isinstance(min_lr, (list, tuple)) else [min_lr] * n_groups
        if len(min_lrs) != n_groups:
            raise ValueError(f"{owner} min_lr must be one float or one per param group ({n_groups}), "
                             f"but was given {len(min_lrs)}.")
        for value in min_lrs:
            check_range(owner, "min_lr", value, 0.0)
        self.optimizer = optimizer
        self.mode, self.threshold_mode = mode, threshold_mode
        self.factor, self.threshold, self.eps = float(factor), float(threshold), float(eps)
        self.patience = _check_int(owner, "patience", patience, 0)
        self.cooldown = _check_int(owner, "cooldown", cooldown, 0)
        self.min_lrs = [float(v) for v in min_lrs]
        self.last_epoch = 0
        self.best = math.inf if mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    def is_better(self, metric: float, best: float) -> bool:
        if self.mode == "min":
            return metric < (best * (1.0 - self.threshold) if self.threshold_mode == "rel" else best - self.threshold)
        return metric > (best * (self.threshold + 1.0) if self.threshold_mode == "rel" else best + self.threshold)

    def step(self, metric: float) -> None:
        """Record one evaluation's metric and reduce the lrs if it has stalled long enough."""
        current = float(metric)
        self.last_epoch += 1
        if self.is_better(current, self.best):
            self.best = current
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0  # bad steps during the cooldown do not count
        if self.num_bad_epochs > self.patience:
            for group, min_lr in zip(self.optimizer.param_groups, self.min_lrs):
                new_lr = max(group["lr"] * self.factor, min_lr)
                if group["lr"] - new_lr > self.eps:
                    group["lr"] = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return list(self._last_lr)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"last_epoch": np.asarray(self.last_epoch, dtype=np.int64),
                "best": np.asarray(self.best, dtype=np.float64),
                "num_bad_epochs": np.asarray(self.num_bad_epochs, dtype=np.int64),
                "cooldown_counter": np.asarray(self.cooldown_counter, dtype=np.int64)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore the counters and the best metric (the lrs come back with the optimiser's state)."""
        check_state("ReduceLROnPlateau", state, self.state_dict())
        self.last_epoch = int(state["last_epoch"])
        self.best = float(state["best"])
        self.num_bad_epochs = int(state["num_bad_epochs"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
