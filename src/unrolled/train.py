"""The training loop every task shares: budget, steps, clipping, schedule, evaluation, checkpoints.

    task = MyTask(...)                              # see `Task` below: batches, loss, evaluation
    state = fit(task, optimizer, schedule, run, Budget(epochs=10), eval_every=200, clip=1.0)

`fit` runs optimiser steps until the budget (epochs, or minutes of training time) is spent. Every
`eval_every` steps, and at the end, it evaluates on validation data, appends a record to
metrics.jsonl, lets the task write its outputs (samples, ...), saves the best checkpoint when
validation improved and then the latest one (in that order, so that a kill between the two only
repeats work). Ctrl-C finishes the current step, saves a
checkpoint and returns. `resume(...)` puts a run back exactly where its checkpoint left it (model,
optimiser, schedule, counters, position in the epoch, the task's carried state, every random
generator), so a resumed run equals an uninterrupted one bit for bit.

The clock that budgets and `elapsed_s` measure is training time: evaluation and checkpointing
are excluded (`wall_s` in the metrics includes them).

A NaN or infinite loss or gradient never reaches the parameters. With the policy "stop" (the
default) `fit` raises `TrainingDiverged`, naming the step and the parameter, before the update;
the run keeps its last good checkpoint. With "skip" the batch is skipped and the learning rate
halved (`lr_scale`, kept in the checkpoint; the evaluation record lists the `skipped_steps`), and
training stops only after MAX_SKIPS such batches in a row. The policy is `fit`'s `on_nonfinite`
argument, or else the one set around the call by `nonfinite_policy(...)` (how the command line's
`--on-nonfinite` reaches every task). Non-finite parameters or validation loss at an evaluation
stop training under either policy, and are never checkpointed.

Only one process trains a run at a time (see `unrolled.runs.lock_run`).
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .checkpoint import (CheckpointError, generator_states, has_checkpoint, load_checkpoint, module_generators,
                         prefixed, restore_generators, save_checkpoint, section)
from .core.module import Module
from .decoding import NonFiniteLogits
from .optim import CosineWarmup, clip_grad_norm
from .runs import (Progress, append_metrics, lock_run, release_run, remove_temporaries, truncate_metrics,
                   truncate_samples)

BEST = "best"
LATEST = "checkpoint"
NONFINITE_POLICIES = ("stop", "skip")
SKIP_LR_FACTOR = 0.5        # the learning rate's scale after each skipped batch
MAX_SKIPS = 10              # skipped batches in a row before "skip" gives up
_POLICY = contextvars.ContextVar("on_nonfinite", default="stop")


class TrainingDiverged(ValueError):
    """A NaN or infinite loss, gradient or parameter stopped training; one sentence says where."""


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

    def spent(self, state: "TrainState") -> bool:
        """True once a run at `state` has used up this budget."""
        if self.epochs is not None:
            return state.epoch >= self.epochs
        return state.elapsed_s >= self.seconds


def budget_given(overrides: dict) -> dict:
    """`overrides` that name a budget (epochs or minutes) also clear the other one, so the budget
    given replaces a default or preset one instead of contradicting it."""
    if "epochs" in overrides or "minutes" in overrides:
        return {"epochs": None, "minutes": None, **overrides}
    return dict(overrides)


class RunConfig:
    """What every task's Config dataclass shares: config.json round trip and the training budget.

    A subclass sets `TASK` (written as "task" in config.json) and `KIND` (for messages) and has
    `epochs` and `minutes` fields.
    """

    TASK = ""
    KIND = "a"

    def __post_init__(self):
        for name in ("seed", "split_seed"):
            value = getattr(self, name, 0)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, but was given {value!r}.")

    @classmethod
    def from_dict(cls, values: dict):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - {"task"})
        if unknown:
            raise ValueError(f"{cls.KIND} config takes the keys {sorted(names)}, but was given unknown {unknown}.")
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        return {"task": self.TASK, **dataclasses.asdict(self)}

    @property
    def budget(self) -> Budget:
        return Budget(epochs=self.epochs, minutes=self.minutes)


# a time budget has no step count: its cosine runs over this many virtual steps of the budget
_VIRTUAL_STEPS = 1_000_000


def warmup_cosine(optimizer, config, steps_per_epoch: int):
    """Linear warm-up then cosine for `config` (lr, warmup, min_lr_ratio, epochs | minutes):
    (schedule, None) for an epoch budget, (None, set_progress(fraction)) for a time budget."""
    total = config.epochs * steps_per_epoch if config.epochs is not None else _VIRTUAL_STEPS
    warmup = min(int(round(config.warmup * total)), total - 1)
    schedule = CosineWarmup(optimizer, warmup_steps=warmup, total_steps=total, min_lr=config.lr * config.min_lr_ratio)
    if config.epochs is not None:
        return schedule, None

    def set_progress(fraction: float) -> None:
        for group, base in zip(optimizer.param_groups, schedule.base_lrs):
            group["lr"] = schedule.lr_at(fraction * total, base)

    return None, set_progress


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
    # non-finite batches skipped (policy "skip")
    lr_scale: float = 1.0     # multiplies the scheduled learning rate
    skipped_steps: list = field(default_factory=list)   # since the last evaluation
    skip_streak: int = 0      # skipped batches in a row


@contextlib.contextmanager
def nonfinite_policy(policy: str | None):
    """Within the block, `fit` calls without `on_nonfinite` use `policy` ("stop" or "skip"; None: "stop")."""
    token = _POLICY.set(_check_policy(policy or "stop"))
    try:
        yield
    finally:
        _POLICY.reset(token)


def _check_policy(policy: str) -> str:
    if policy not in NONFINITE_POLICIES:
        raise ValueError(f"on_nonfinite must be one of {', '.join(NONFINITE_POLICIES)}, but was given {policy!r}.")
    return policy


def _nonfinite_gradients(named_params) -> list[tuple[str, str]]:
    """(name, "nan" or "inf") of every parameter whose gradient is not finite, in parameter order."""
    bad = []
    for name, p in named_params:
        if not np.isfinite(p.grad.sum()) and not np.isfinite(p.grad).all():  # the sum is the fast check
            bad.append((name, "nan" if np.isnan(p.grad).any() else "inf"))
    return bad


def _describe_nonfinite(loss: float, bad: list[tuple[str, str]], norm: float) -> str | None:
    """What is not finite in a step, as a clause ("the loss is nan and the gradient of 'w' is inf"), or None."""
    parts = [f"the loss is {loss}"] if not math.isfinite(loss) else []
    if bad:
        others = f" (and {len(bad) - 1} other gradients are not finite either)" if len(bad) > 1 else ""
        parts.append(f"the gradient of '{bad[0][0]}' is {bad[0][1]}{others}")
    elif not math.isfinite(norm):
        parts.append(f"the gradient norm overflowed to {norm}")
    return " and ".join(parts) or None


LOWER_LR = "a lower --lr would avoid it"  # the advice that ends a divergence's sentence


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
    the epoch in progress has been prepared). What the run wrote after its checkpoint (metrics
    records and samples of later steps, temporary files of an interrupted write) is removed, since
    those steps will be run again. A checkpoint that does not fit the task's model, optimiser or
    schedule is a CheckpointError and changes nothing.
    """
    arrays, meta = load_checkpoint(run, LATEST)
    run = Path(run)
    train, fields = meta.get("train"), {f.name for f in dataclasses.fields(TrainState)}
    if not isinstance(train, dict) or not set(train) <= fields or not isinstance(meta.get("rng"), dict):
        raise CheckpointError(f"{run / (LATEST + '.json')} is not a training checkpoint (it lacks the loop's position "
                              "or the random states), so the run cannot continue from it.")
    state = TrainState(**train)
    try:
        task.model.load_state_dict(section(arrays, "model"))
        optimizer.load_state_dict(section(arrays, "optim"))
        if schedule is not None:
            schedule.load_state_dict(section(arrays, "sched"))
    except ValueError as e:
        raise CheckpointError(f"{run / (LATEST + '.npz')} does not fit the model and optimiser that "
                              f"{run / 'config.json'} describes: {str(e).rstrip('.')}.") from None
    restore_generators(module_generators(task.model), meta["rng"])
    lock_run(run)  # another process training this run is refused here; `fit` holds the run while it trains
    try:
        remove_temporaries(run)
        truncate_metrics(run, state.step)
        truncate_samples(run, state.step)
    finally:
        release_run(run)
    return state, section(arrays, "task")


def fit(task: Task, optimizer, schedule, run, budget: Budget, *, eval_every: int, clip: float | None = None,
        state: TrainState | None = None, task_arrays: dict | None = None, meta: dict | None = None,
        progress: bool = True, set_progress=None, on_nonfinite: str | None = None,
        bar: Progress | None = None) -> tuple[TrainState, bool]:
    """Train until the budget is spent or Ctrl-C; returns (state, interrupted).

    `set_progress(fraction)` is called before every step with the fraction of the budget spent,
    for schedules that follow a time budget. `meta` is stored in every checkpoint (e.g. the names
    of the config and vocabulary files). `on_nonfinite` is "stop" or "skip" (see the module
    docstring; None: the policy of the enclosing `nonfinite_policy`). `bar`: a caller's progress bar
    to draw on instead of one of fit's own (kept open, and evaluations are left to the caller to
    report), for a caller that calls fit once per epoch. The model is left in eval mode. A state
    whose budget is already spent returns at once: its end was evaluated when the budget ran out.
    """
    if not isinstance(eval_every, (int, np.integer)) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, but was given {eval_every!r}.")
    policy = _check_policy(on_nonfinite) if on_nonfinite is not None else _POLICY.get()
    run, meta = Path(run), dict(meta or {})
    state = state or TrainState()
    if budget.spent(state):  # e.g. a run resumed after it was stopped while scoring its test set
        task.model.eval()
        return state, False
    n_batches = task.batches_per_epoch()
    total_steps = budget.epochs * n_batches if budget.epochs is not None else None
    model = task.model
    named = list(model.named_parameters())
    params = [p for _, p in named]
    groups = optimizer.param_groups
    saved_step = state.step if has_checkpoint(run) else None  # the last good checkpoint, for messages
    lock_run(run)
    own_bar = bar is None  # a caller's bar (one fit per epoch) stays open, and the caller reports evaluations
    bar = Progress(total_steps, budget.seconds, state.step, state.elapsed_s, enabled=progress) if own_bar else bar

    def spent() -> float:
        if total_steps is not None:
            return state.step / total_steps
        return state.elapsed_s / budget.seconds

    def diverged(what: str, when: str, remedy: str) -> TrainingDiverged:
        kept = f"{run} keeps its checkpoint of step {saved_step}" if saved_step is not None else f"{run} has no checkpoint yet"
        return TrainingDiverged(f"training diverged {when}: {what}; {kept}, and {remedy}.")

    def evaluate_and_save() -> None:
        nonlocal saved_step
        bad = next((name for name, p in named if not np.isfinite(p.data).all()), None)
        if bad is not None:  # an update overflowed: never checkpoint it
            raise diverged(f"the parameter '{bad}' is no longer finite, so it is not saved", f"by step {state.step}",
                           LOWER_LR)
        t0 = time.perf_counter()
        model.eval()
        val = float(task.evaluate())
        if not math.isfinite(val):
            raise diverged(f"the validation loss is {val}, so this state is not saved", f"by step {state.step}",
                           LOWER_LR)
        record = {"step": state.step, "epoch": round(state.epoch + state.batch / n_batches, 4),
                  "elapsed_s": round(state.elapsed_s, 3), "wall_s": round(state.wall_s, 3),
                  "train_loss": state.loss_sum / state.batches if state.batches else None, "val_loss": val,
                  "lr": groups[0]["lr"] * state.lr_scale,
                  "grad_norm": state.grad_norm_sum / state.batches if state.batches else None,
                  "tokens_per_s": state.window_tokens / state.window_s if state.window_s else None}
        if state.skipped_steps:
            record.update(skipped_steps=list(state.skipped_steps), lr_scale=state.lr_scale)
        record.update(getattr(task, "eval_metrics", dict)())  # e.g. a classifier's val_accuracy
        try:
            task.after_eval(state.step, val)
        except NonFiniteLogits:  # finite weights whose outputs overflow (a language model's samples)
            raise diverged("the model's next-token logits are no longer finite, so this state is not saved",
                           f"by step {state.step}", LOWER_LR) from None
        model.train()
        improved = state.best_val is None or val < state.best_val
        if improved:
            state.best_val = val
        state.loss_sum = state.grad_norm_sum = state.window_s = 0.0
        state.batches = state.window_tokens = 0
        state.skipped_steps = []
        state.wall_s += time.perf_counter() - t0
        append_metrics(run, record)
        if improved:  # before the latest: a kill in between redoes this step and saves the same best
            save_checkpoint(run, prefixed("model", model.state_dict()),
                            {**meta, "step": state.step, "epoch": state.epoch, "best_val": val}, BEST)
        save_training_state(run, task, optimizer, schedule, state, meta)
        saved_step = state.step
        train_text = "-" if record["train_loss"] is None else f"{record['train_loss']:.4f}"
        if own_bar:
            bar.write(f"step {state.step}: train {train_text}, val {val:.4f}")

    def update() -> None:
        """optimizer.step() with the learning rates scaled by state.lr_scale (the schedule's own lrs kept)."""
        if state.lr_scale == 1.0:
            optimizer.step()
            return
        scheduled = [group["lr"] for group in groups]
        for group in groups:
            group["lr"] *= state.lr_scale
        optimizer.step()
        for group, lr in zip(groups, scheduled):
            group["lr"] = lr

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
                bad = _nonfinite_gradients(named)
                norm = clip_grad_norm(params, clip) if clip and not bad else 0.0
                problem = _describe_nonfinite(loss, bad, norm)
                if problem is not None and policy == "stop":
                    raise diverged(f"{problem}, so the parameters were not updated", f"at step {state.step + 1}",
                                   "--on-nonfinite skip would skip such batches and lower the learning rate instead")
                if problem is None:
                    update()
                    state.loss_sum += loss
                    state.grad_norm_sum += norm
                    state.batches += 1
                    state.tokens += tokens
                    state.window_tokens += tokens
                    state.skip_streak = 0
                else:
                    state.lr_scale *= SKIP_LR_FACTOR
                    state.skipped_steps.append(state.step + 1)
                    state.skip_streak += 1
                    bar.note(f"step {state.step + 1}: {problem}; batch skipped, learning rate now "
                             f"{state.lr_scale:g} of the schedule's.")
                    if state.skip_streak > MAX_SKIPS:
                        raise diverged(f"{problem} after {MAX_SKIPS} skipped batches in a row, so the parameters "
                                       "were not updated", f"at step {state.step + 1}",
                                       LOWER_LR)
                if schedule is not None:
                    schedule.step()
                dt = time.perf_counter() - t0
                state.step += 1
                state.batch += 1
                state.elapsed_s += dt
                state.wall_s += dt
                state.window_s += dt
                if state.batch == n_batches:
                    state.epoch, state.batch = state.epoch + 1, 0
                bar.update(state.step, state.elapsed_s, loss, state.window_tokens / state.window_s,
                           state.elapsed_s / max(state.step, 1))
                if state.step % eval_every == 0:
                    evaluate_and_save()
                    last_eval = state.step
        if interrupted.is_set() and budget_left():
            save_training_state(run, task, optimizer, schedule, state, meta)
        elif last_eval != state.step:  # the budget's end is always evaluated, Ctrl-C in its last step too
            evaluate_and_save()
    finally:
        if own_bar:
            bar.close()
        if previous_handler is not None and not interrupted.is_set():
            signal.signal(signal.SIGINT, previous_handler)
        model.eval()
        release_run(run)
    return state, interrupted.is_set()
