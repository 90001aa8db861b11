"""The training loop every task shares: budget, steps, clipping, schedule, evaluation, checkpoints.

    task = MyTask(...)                              # see `Task` below: batches, loss, evaluation
    state = fit(task, optimizer, schedule, run, Budget(epochs=10), eval_every=200, clip=1.0)

`fit` runs optimiser steps until the budget (epochs, or minutes of training time) is spent. Every
`eval_every` steps, and at the end, it evaluates on validation data, appends a record to
metrics.jsonl, lets the task write its outputs (samples, ...), saves the latest checkpoint and,
when validation improved, the best one beside it. Ctrl-C finishes the current step, saves a
checkpoint and returns. `resume(...)` puts a run back exactly where its checkpoint left it (model,
optimiser, schedule, counters, position in the epoch, the task's carried state, every random
generator), so a resumed run equals an uninterrupted one bit for bit.

The clock that budgets and `elapsed_s` measure is training time: evaluation and checkpointing
are excluded (`wall_s` in the metrics includes them).
"""
from __future__ import annotations

import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from .checkpoint import (generator_states, load_checkpoint, module_generators, prefixed, restore_generators,
                         save_checkpoint, section)
from .core.module import Module
from .optim import clip_grad_norm
from .runs import Progress, append_metrics, truncate_metrics

BEST = "best"
LATEST = "checkpoint"


class Task(Protocol):
    """What `fit` needs from a task (language model, classifier, forecaster, ...).

    Optionally `eval_metrics() -> dict`, called after `evaluate()`: more numbers for the metrics
    record (a classifier's accuracy, ...).
    """

    model: Module

    def batches_per_epoch(self) -> int: ...

    def start_epoch(self, epoch: int) -> None:
        """Prepare an epoch (reset a carried state, fix a batch order from the epoch number, ...)."""

    def train_batch(self, epoch: int, index: int) -> tuple[float, int]:
        """Forward and backward on batch `index` of `epoch` (gradients accumulate); (mean loss, tokens)."""

    def evaluate(self) -> float:
        """Validation loss (called in eval mode). A task may also define `eval_metrics()`, returning a
        dict of further numbers from that evaluation (e.g. val_accuracy) for the metrics record."""

    def after_eval(self, step: int, val_loss: float) -> None:
        """Write task outputs after an evaluation (samples, ...); must not touch the training RNGs."""

    def state_arrays(self) -> dict[str, np.ndarray]:
        """State carried between batches that a checkpoint must keep (e.g. a hidden state)."""

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None: ...


@dataclass(frozen=True)
class Budget:
    """How long to train: a number of epochs, or minutes of training time (exactly one)."""

    epochs: int | None = None
    minutes: float | None = None

    def __post_init__(self):
        if (self.epochs is None) == (self.minutes is None):
            raise ValueError("give the training budget as epochs or as minutes, not both and not neither.")
        if self.epochs is not None and (not isinstance(self.epochs, (int, np.integer)) or self.epochs < 1):
            raise ValueError(f"epochs must be a positive integer, but was given {self.epochs!r}.")
        if self.minutes is not None and not (isinstance(self.minutes, (int, float)) and 0 < self.minutes < math.inf):
            raise ValueError(f"minutes must be a positive number, but was given {self.minutes!r}.")

    @property
    def seconds(self) -> float | None:
        return None if self.minutes is None else 60.0 * self.minutes


@dataclass
class TrainState:
    """Everything about the loop's position that a checkpoint keeps (JSON-ready)."""

    step: int = 0
    epoch: int = 0
    batch: int = 0            # batches done in the current epoch
    elapsed_s: float = 0.0    # training time
    wall_s: float = 0.0       # training + evaluation + checkpointing time
    tokens: int = 0
    best_val: float | None = None
    # running sums since the last evaluation, for the logged averages
    loss_sum: float = 0.0
    grad_norm_sum: float = 0.0
    batches: int = 0
    window_tokens: int = 0
    window_s: float = 0.0


def _install_interrupt_flag():
    """On the first Ctrl-C set a flag (the loop saves and stops); a second one interrupts at once."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return flag, None
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum, frame):
        flag.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    return flag, previous


def save_training_state(run, task: Task, optimizer, schedule, state: TrainState, meta: dict,
                        name: str = LATEST) -> None:
    """Write the whole training state (see the module docstring) as checkpoint `name` in `run`."""
    arrays = {**prefixed("model", task.model.state_dict()), **prefixed("optim", optimizer.state_dict()),
              **prefixed("task", task.state_arrays())}
    if schedule is not None:
        arrays.update(prefixed("sched", schedule.state_dict()))
    record = {**meta, "step": state.step, "epoch": state.epoch, "best_val": state.best_val,
              "train": dataclasses.asdict(state),
              "rng": generator_states(module_generators(task.model))}
    save_checkpoint(run, arrays, record, name)


def resume(run, task: Task, optimizer, schedule) -> tuple[TrainState, dict[str, np.ndarray]]:
    """Load the latest checkpoint of `run` into task, optimiser and schedule.

    Returns the TrainState and the task's saved arrays (which `fit` hands back to the task once
    the epoch in progress has been prepared). metrics.jsonl loses any record newer than the
    checkpoint, since those steps will be run again.
    """
    arrays, meta = load_checkpoint(run, LATEST)
    task.model.load_state_dict(section(arrays, "model"))
    optimizer.load_state_dict(section(arrays, "optim"))
    if schedule is not None:
        schedule.load_state_dict(section(arrays, "sched"))
    restore_generators(module_generators(task.model), meta["rng"])
    state = TrainState(**meta["train"])
    truncate_metrics(run, state.step)
    return state, section(arrays, "task")


def fit(task: Task, optimizer, schedule, run, budget: Budget, *, eval_every: int, clip: float | None = None,
        state: TrainState | None = None, task_arrays: dict | None = None, meta: dict | None = None,
        progress: bool = True, set_progress=None) -> tuple[TrainState, bool]:
    """Train until the budget is spent or Ctrl-C; returns (state, interrupted).

    `set_progress(fraction)` is called before every step with the fraction of the budget spent,
    for schedules that follow a time budget. `meta` is stored in every checkpoint (e.g. the names
    of the config and vocabulary files). The model is left in eval mode.
    """
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, but was given {eval_every!r}.")
    run, meta = Path(run), dict(meta or {})
    state = state or TrainState()
    n_batches = task.batches_per_epoch()
    total_steps = budget.epochs * n_batches if budget.epochs is not None else None
    bar = Progress(total_steps, budget.seconds, state.step, state.elapsed_s, enabled=progress)
    params = task.model.parameters()
    model = task.model

    def spent() -> float:
        if total_steps is not None:
            return state.step / total_steps
        return state.elapsed_s / budget.seconds

    def evaluate_and_save() -> None:
        t0 = time.perf_counter()
        model.eval()
        val = float(task.evaluate())
        record = {"step": state.step, "epoch": round(state.epoch + state.batch / n_batches, 4),
                  "elapsed_s": round(state.elapsed_s, 3), "wall_s": round(state.wall_s, 3),
                  "train_loss": state.loss_sum / state.batches if state.batches else None, "val_loss": val,
                  "lr": optimizer.param_groups[0]["lr"],
                  "grad_norm": state.grad_norm_sum / state.batches if state.batches else None,
                  "tokens_per_s": state.window_tokens / state.window_s if state.window_s else None}
        record.update(getattr(task, "eval_metrics", dict)())  # e.g. a classifier's val_accuracy
        task.after_eval(state.step, val)
        model.train()
        improved = math.isfinite(val) and (state.best_val is None or val < state.best_val)
        if improved:
            state.best_val = val
        state.loss_sum = state.grad_norm_sum = state.window_s = 0.0
        state.batches = state.window_tokens = 0
        state.wall_s += time.perf_counter() - t0
        append_metrics(run, record)
        save_training_state(run, task, optimizer, schedule, state, meta)
        if improved:
            save_checkpoint(run, prefixed("model", model.state_dict()),
                            {**meta, "step": state.step, "epoch": state.epoch, "best_val": val}, BEST)
        train_text = "-" if record["train_loss"] is None else f"{record['train_loss']:.4f}"
        bar.write(f"step {state.step}: train {train_text}, val {val:.4f}")

    def budget_left() -> bool:
        if total_steps is not None:
            return state.epoch < budget.epochs
        return state.elapsed_s < budget.seconds

    interrupted, previous_handler = _install_interrupt_flag()
    model.train()
    last_eval = -1
    try:
        first = True
        while budget_left() and not interrupted.is_set():
            task.start_epoch(state.epoch)
            if first and state.batch > 0 and task_arrays:
                task.load_state_arrays(task_arrays)  # the carried state of the epoch in progress
            first, epoch = False, state.epoch
            while state.epoch == epoch and budget_left() and not interrupted.is_set():
                t0 = time.perf_counter()
                if set_progress is not None:
                    set_progress(spent())
                optimizer.zero_grad()
                loss, tokens = task.train_batch(state.epoch, state.batch)
                if not math.isfinite(loss):
                    raise ValueError(f"training diverged: the loss became {loss} at step {state.step + 1}; "
                                     "lower the learning rate or the gradient clip.")
                norm = clip_grad_norm(params, clip) if clip else 0.0
                optimizer.step()
                if schedule is not None:
                    schedule.step()
                dt = time.perf_counter() - t0
                state.step += 1
                state.batch += 1
                state.tokens += tokens
                state.elapsed_s += dt
                state.wall_s += dt
                state.loss_sum += loss
                state.grad_norm_sum += norm
                state.batches += 1
                state.window_tokens += tokens
                state.window_s += dt
                if state.batch == n_batches:
                    state.epoch, state.batch = state.epoch + 1, 0
                bar.update(state.step, state.elapsed_s, loss, state.window_tokens / state.window_s,
                           state.elapsed_s / max(state.step, 1))
                if state.step % eval_every == 0:
                    evaluate_and_save()
                    last_eval = state.step
        if interrupted.is_set():
            save_training_state(run, task, optimizer, schedule, state, meta)
        elif last_eval != state.step:
            evaluate_and_save()
    finally:
        bar.close()
        if previous_handler is not None and not interrupted.is_set():
            signal.signal(signal.SIGINT, previous_handler)
        model.eval()
    return state, interrupted.is_set()
