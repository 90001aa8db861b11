"""Time-series forecasting: train a recurrent forecaster on a CSV file, compare it with the baselines.

    config = Config(data="pollution.csv", target="TEMP", lookback=120, horizon=1, gap=23)
    run, results = train(config, "runs/beijing")
    # results None: stopped by Ctrl-C; this continues it (or a killed run, from its last epoch)
    run, results = train(resume_from="runs/beijing")
    predict("runs/beijing", out="forecast.csv")

Training loads and cleans the series, splits it in time order, fits the normalisation on the
training rows only and cuts sliding windows (forecast_data.prepare). The model (a direct
multi-step Forecaster, or an encoder-decoder; with several bases or `members`, an ensemble of
such models, one or more per base, each clipping its own gradients, their forecasts averaged)
trains with Adam on shuffled training windows, one `unrolled.train.fit` call per epoch; the
learning rate halves when validation stalls (ReduceLROnPlateau) or follows a cosine over the
planned epochs, training stops early after `patience` epochs without a better validation loss,
and the best weights are restored. Every epoch ends with a checkpoint of the whole training state
(the plateau schedule's included; early stopping counts in metrics.jsonl), so an interrupted or
killed run continues exactly where it stopped. The test period is then forecast, in original
units, by the model and by every baseline on exactly the same windows; metrics.jsonl ends with
that comparison, and report.md and the plots show it.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint, load_weights, prefixed, save_checkpoint, section
from ..core.checks import counted
from ..core.module import Module, no_grad
from ..data.series import Series
from ..data.windows import Normaliser, Windows
from ..forecasting import baselines, metrics
from ..forecasting.baselines import LinearAR
from ..forecasting.model import EncoderDecoderForecaster, Forecaster
from ..layers import HuberLoss, L1Loss, MSELoss
from ..optim import Adam, CosineWarmup, ReduceLROnPlateau, clip_grad_norm, group_lasso_
from ..runs import (Progress, append_metrics, atomic_write_text, create_run, finished, load_config, outside_runs,
                   read_metrics)
from ..train import Budget, TrainState, fit, resume, save_training_state
from .forecast_data import (Framing, Prepared, aligned, future_times, load, model_values, parse_bases, prepare,
                            rounding_note)

TASK = "forecast"
DATA = "data"                      # data.npz + data.json: normalisation and columns, for predict
MODELS = {"direct": Forecaster, "encdec": EncoderDecoderForecaster}
LOSSES = {"mse": MSELoss, "mae": L1Loss, "huber": HuberLoss}


@dataclass
class Config:
    """Everything a forecasting run depends on (saved as the run's config.json)."""

    data: str = ""                           # a CSV file with a header row
    target: str = ""                         # the column to forecast
    features: list[str] | None = None        # input columns besides the target; None: every usable column
    time_col: str | None = None              # None: year/month/day/hour columns, or a first column of dates
    missing: str = "interpolate"             # or "drop" (rows with a missing value)
    categorical: str = "onehot"              # or "drop" (columns of labels)
    resample: str | None = None              # "hourly", "daily", "monthly", "yearly": means per period
    calendar: bool = False                   # add sin/cos of the time of day and of year as inputs
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, validation, test fractions in time order
    test_last: int | None = None             # hold out the last N rows as test instead
    val_last: int | None = None              # and the N rows before them as validation
    lookback: int = 24                       # input steps per window
    horizon: int = 1                         # steps forecast at once
    gap: int = 0                             # steps skipped between the window and the first forecast step
    stride: int = 1                          # between training windows
    season: int | None = None                # None: from the sampling frequency (24 hourly, 12 monthly, ...)
    ma_window: int | None = None             # moving-average baseline; None: the season (or the lookback)
    ridge: float = 1e-3                      # of the linear autoregressive baseline
    log: bool = False                        # model the log of a positive target (swings that grow with the level)
    base: str = "none"                       # the model corrects: "none", "last" value, the linear "ar";
                                             # "ar,last": an ensemble, one model per base, forecasts averaged
    ar_features: list[str] | str | None = None  # the input columns of the linear AR an "ar" base corrects:
                                             # None every one (the baseline itself), names, or "auto"
    members: int = 1                         # models per base, each with its own seed; all forecasts averaged
    round: float | str | None = None         # round the model's forecasts to this step; "auto": the power of
                                             # ten the target is recorded in (training period; e.g. whole degrees)
    model: str = "direct"                    # "direct" (dense head) or "encdec" (encoder-decoder)
    cell: str = "gru"
    hidden: int = 32
    layers: int = 1
    dropout: float = 0.0                     # between layers and before the head
    recurrent_dropout: float = 0.0           # on the state in each recurrent product, one mask per sequence
    loss: str = "mse"                        # "mse", "mae" or "huber" (on normalised values)
    lr: float = 1e-3
    schedule: str = "plateau"                # "plateau": halve the lr when validation stalls; "cosine": over the epochs
    lr_patience: int = 3                     # plateau: epochs without improvement before the lr halves
    batch: int = 64
    clip: float = 1.0
    input_lasso: float = 0.0                 # group lasso on each input column's first-layer weights, but the
                                             # target's: after every step a column shrinks by lr * input_lasso
    epochs: int = 100                        # at most
    patience: int = 10                       # early stopping: epochs without a better validation loss
    minutes: float | None = None             # stop after this much training time, whatever the epochs
    seed: int = 0

    def __post_init__(self):
        self.split = tuple(float(f) for f in self.split)
        bases = parse_bases(self.base)
        if self.ar_features is not None:
            if "ar" not in bases:
                raise ValueError(f"ar_features chooses the columns of the linear AR that an 'ar' base corrects, "
                                 f"but the base is {self.base!r}; add ar to it, or leave ar_features out.")
            if self.ar_features != "auto" and not (isinstance(self.ar_features, (list, tuple)) and all(
                    isinstance(name, str) for name in self.ar_features)):
                raise ValueError(f"ar_features must be 'auto' or a list of column names, but was given "
                                 f"{self.ar_features!r}.")
        for name in ("model", "cell", "loss", "schedule"):
            choices = {"model": MODELS, "cell": ("rnn", "lstm", "gru"), "loss": LOSSES,
                       "schedule": ("plateau", "cosine")}[name]
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}, but was given {getattr(self, name)!r}.")
        for name in ("lookback", "horizon", "stride", "members", "hidden", "layers", "batch", "epochs", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, but was given {value!r}.")
        if not (isinstance(self.input_lasso, (int, float)) and self.input_lasso >= 0):
            raise ValueError(f"input_lasso must be a number >= 0, but was given {self.input_lasso!r}.")
        if self.round not in (None, "auto"):
            step = float(self.round) if isinstance(self.round, (int, float)) and abs(self.round) < 1e308 else None
            if isinstance(self.round, bool) or step is None or not 0 < step < math.inf:
                raise ValueError(f"round must be 'auto' or a step above zero, but was given {self.round!r}.")
            self.round = step
        for name in ("gap", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be an integer >= 0, but was given {getattr(self, name)!r}.")

    @classmethod
    def from_dict(cls, values: dict) -> "Config":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names - {"task"})
        if unknown:
            raise ValueError(f"a forecasting config takes the keys {sorted(names)}, but was given unknown {unknown}.")
        return cls(**{k: v for k, v in values.items() if k in names})

    def to_dict(self) -> dict:
        return {"task": TASK, **dataclasses.asdict(self), "split": list(self.split)}


# ----- the model and its training ------------------------------------------------------------------

class Ensemble(Module):
    """The forecasters of a run, `config.members` per base of `config.base` (usually one in all):
    member k reads the window as framing k frames it (see member_framings), and the run's forecast
    is the mean of the members' forecasts, each with its base forecast added back. Members differ in
    their framing and their seed (config.seed + k)."""

    def __init__(self, members: list[Module]):
        super().__init__()
        self.members = list(members)


def build(config: Config, n_features: int, dtype=np.float32) -> Ensemble:
    return Ensemble([MODELS[config.model](n_features, config.horizon, hidden_size=config.hidden,
                                          num_layers=config.layers, cell=config.cell, dropout=config.dropout,
                                          recurrent_dropout=config.recurrent_dropout, dtype=dtype,
                                          seed=config.seed + k)
                     for k in range(config.members * len(parse_bases(config.base)))])


def member_framings(model: Ensemble, framing: Framing) -> list[Framing]:
    """The framing of each member: the bases in turn ("ar,last" with 2 members: ar, last, ar, last)."""
    bases = framing.members()
    return bases * (len(model.members) // len(bases))


def forecast_windows(model: Ensemble, framing: Framing, origins: np.ndarray, batch: int = 1024) -> np.ndarray:
    """(B, H) normalised forecasts of the windows at `origins` (the mean over members, base forecasts
    added), without caches."""
    out = np.zeros((len(origins), framing.windows.horizon))
    dtype = model.parameters()[0].dtype
    with no_grad():
        for member, member_framing in zip(model.members, member_framings(model, framing)):
            for i in range(0, len(origins), batch):
                x, base = member_framing.inputs(origins[i:i + batch], dtype)
                out[i:i + len(base)] += member(x) + base
    return out / len(model.members)


class ForecastTask:
    """The `unrolled.train.Task` of a forecaster: shuffled training windows, loss on validation windows."""

    def __init__(self, model: Ensemble, data: Prepared, config: Config):
        self.model, self.data, self.config = model, data, config
        self.framings = member_framings(model, data)
        self.loss = LOSSES[config.loss]()
        self.dtype = model.parameters()[0].dtype
        self.order = data.train
        self.val_forecast = None
        self.plateau: ReduceLROnPlateau | None = None  # set by make_optimizer for the "plateau" schedule

    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.data.train) / self.config.batch)

    def start_epoch(self, epoch: int) -> None:
        self.order = np.random.default_rng([self.config.seed, epoch]).permutation(self.data.train)

    def train_batch(self, epoch: int, index: int) -> tuple[float, int]:
        origins = self.order[index * self.config.batch:(index + 1) * self.config.batch]
        total = 0.0
        for member, framing in zip(self.model.members, self.framings):  # each learns on its own, same batch
            x, base = framing.inputs(origins, self.dtype)                          # (L, B, F), (B, H)
            y = framing.targets(origins, base, self.dtype)                         # (B, H)
            total += float(self.loss(member(x), y))
            member.backward(self.loss.backward())
            clip_grad_norm(member.parameters(), self.config.clip)                  # its own clip, as if alone
        return total / len(self.framings), len(origins)

    def evaluate(self) -> float:
        self.val_forecast = forecast_windows(self.model, self.data, self.data.val)            # (B, H)
        y = self.data.windows.targets(self.data.val)
        with no_grad():
            return float(self.loss(self.val_forecast, y))

    def eval_metrics(self) -> dict[str, float]:
        """The validation MAE in the units of the file, beside the loss."""
        truth = self.data.series.target_values[self.data.windows.target_rows(self.data.val)]
        forecast = self.data.original_units(self.val_forecast, self.data.round_step)
        return {"val_mae": float(metrics.mae(truth, forecast))}

    def after_eval(self, step: int, val_loss: float) -> None:
        """The plateau schedule steps here, before `fit` saves the epoch's checkpoint, so its state is
        saved with it (state_arrays)."""
        if self.plateau is not None:
            self.plateau.step(val_loss)

    def state_arrays(self) -> dict[str, np.ndarray]:
        return prefixed("plateau", self.plateau.state_dict()) if self.plateau is not None else {}

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        if self.plateau is not None:
            self.plateau.load_state_dict(section(arrays, "plateau"))


class InputLassoAdam(Adam):
    """Adam, then the group lasso's proximal step on each member's first-layer input weights, one
    group per input column but the target's (optim.group_lasso_, decoupled from Adam as AdamW's
    weight decay is): an input whose gradient does not hold its weights up is shrunk to exactly
    zero, so a network reading every column learns which to ignore."""

    def __init__(self, model: Ensemble, lr: float, strength: float):
        super().__init__(model.parameters(), lr=lr)
        self.inputs = [member.encoder.weight_ih_l0 for member in model.members]     # (G*Hd, F) each
        self.strength = strength

    def step(self) -> None:
        super().step()
        for weight in self.inputs:
            group_lasso_(weight.data[:, 1:], self.param_groups[0]["lr"] * self.strength)


def make_optimizer(task: ForecastTask, config: Config) -> tuple[Adam, CosineWarmup | None]:
    """Adam (with the input lasso, if any) and its cosine schedule (stepped by `fit`), or None with
    the plateau schedule set on the task (stepped after each epoch's evaluation)."""
    optimizer = (InputLassoAdam(task.model, config.lr, config.input_lasso) if config.input_lasso
                 else Adam(task.model.parameters(), lr=config.lr))
    if config.schedule == "plateau":
        task.plateau = ReduceLROnPlateau(optimizer, factor=0.5, patience=config.lr_patience)
        return optimizer, None
    # one batch of warm-up per 100 planned steps, then down to 1% of the lr at the last epoch's end
    total = config.epochs * task.batches_per_epoch()
    return optimizer, CosineWarmup(optimizer, warmup_steps=total // 100, total_steps=total, min_lr=config.lr / 100)


def epochs_since_best(run: Path) -> int:
    """Evaluations after the lowest validation loss in metrics.jsonl (which `resume` cuts back to the
    checkpoint, so this holds for a resumed run too)."""
    losses = [r["val_loss"] for r in read_metrics(run) if "val_loss" in r]
    return len(losses) - 1 - int(np.argmin(losses)) if losses else 0


def stop_reason(run: Path, state: TrainState, config: Config) -> str | None:
    """Why training is over (an empty string: every epoch done), or None while it goes on (an epoch
    begun, and stopped by Ctrl-C, is always finished)."""
    if state.batch > 0:
        return None
    if (stale := epochs_since_best(run)) >= config.patience:
        return f"early stop: no better validation loss for {counted(stale, 'epoch')}."
    if config.minutes is not None and state.elapsed_s >= 60 * config.minutes:
        return f"time budget of {config.minutes:g} min spent."
    return "" if state.epoch >= config.epochs else None


def fit_with_early_stopping(task: ForecastTask, run: Path, config: Config, optimizer, schedule, state: TrainState,
                            meta: dict, log=None, progress: bool = True) -> tuple[TrainState, bool]:
    """One `fit` per epoch until stop_reason; returns (state, interrupted). Without an interruption
    the best weights are loaded into the model.

    Prints one line per epoch to `log` (default stderr, above the progress bar over all epochs)."""
    log = log or sys.stderr
    bar = Progress(config.epochs * task.batches_per_epoch(), None, state.step, state.elapsed_s, enabled=progress,
                   rate="windows/s")
    say = bar.note if log is sys.stderr else (lambda text: print(text, file=log))
    # the members clip their own gradients (train_batch), so this bound on all of them together never
    # binds: fit only checks and records their norm, after the members' clips
    clip = config.clip * math.sqrt(len(task.model.members))
    try:
        while (reason := stop_reason(run, state, config)) is None:
            state, interrupted = fit(task, optimizer, schedule, run, Budget(epochs=state.epoch + 1),
                                     eval_every=task.batches_per_epoch(), clip=clip, state=state, meta=meta, bar=bar)
            if interrupted:
                return state, True
            record = read_metrics(run)[-1]
            train = "-" if record["train_loss"] is None else f"{record['train_loss']:.4f}"  # every batch skipped
            say(f"epoch {state.epoch}: train {train}, val {record['val_loss']:.4f} "
                f"(MAE {record['val_mae']:.4g}){' (best)' if record['val_loss'] == state.best_val else ''}, "
                f"lr {optimizer.param_groups[0]['lr']:.2g}, {state.elapsed_s:.0f} s")
    finally:
        bar.close()
    if reason:
        print(reason, file=log)
    load_weights(task.model, run, "best")
    task.model.eval()
    return state, False


# ----- evaluation ----------------------------------------------------------------------------------

def baseline_forecasts(data: Prepared, origins: np.ndarray) -> dict[str, np.ndarray]:
    """Every baseline's (B, H) forecasts in original units; one without enough history is left out."""
    y, w = data.series.target_values, data.windows
    out = {"persistence": baselines.persistence(y, origins, w.horizon, w.gap)}
    if data.season > 1:
        out["seasonal_naive"] = baselines.seasonal_naive(y, origins, w.horizon, data.season, w.gap)
    if origins.min() + 1 >= data.ma_window:
        out["moving_average"] = baselines.moving_average(y, origins, w.horizon, data.ma_window, w.gap)
    if data.linear_ar is not None:   # None: a run of an older version, which kept only the AR its base corrects
        out["linear_ar"] = data.original_units(data.linear_ar.predict(w, origins))
    return out


def evaluate(model: Module, data: Prepared, origins: np.ndarray | None = None, scale: float | None = None) -> dict:
    """Forecasts of the model and the baselines in original units, with their errors, on the windows at
    `origins` (default the test period); MASE divides by `scale` (default the training period's)."""
    origins = data.test if origins is None else origins
    scale = data.mase_scale() if scale is None else scale
    truth = data.series.target_values[data.windows.target_rows(origins)]                    # (B, H)
    forecasts = {"model": data.original_units(forecast_windows(model, data, origins), data.round_step)}
    forecasts.update({f"baseline_{k}": v for k, v in baseline_forecasts(data, origins).items()})
    scores = {name: metrics.summary(truth, p, scale) for name, p in forecasts.items()}
    curves = {name: metrics.by_horizon(truth, p) for name, p in forecasts.items()}
    return {"truth": truth, "forecasts": forecasts, "scores": scores, "curves": curves, "mase_scale": scale}


def final_record(state: TrainState, results: dict) -> dict:
    """The last line of metrics.jsonl: test_* for the model, baseline_<name>_* for each baseline."""
    record = {"step": state.step, "epoch": state.epoch, "best_val_loss": state.best_val,
              "elapsed_s": round(state.elapsed_s, 3)}
    for name, score in results["scores"].items():
        prefix = "test" if name == "model" else name
        record.update({f"{prefix}_{k}": v for k, v in score.items()})
    return record


# ----- training a run ------------------------------------------------------------------------------

def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def train(config: Config | None = None, out=None, resume_from=None, log=None,
          progress: bool = True) -> tuple[Path, dict | None]:
    """Train into the new run folder `out`, or continue the run in `resume_from`; returns (run,
    evaluation results), results None when interrupted. Data is checked before the folder is touched.

    What cleaning did and one line per epoch go to `log` (default stderr); `progress` draws a bar
    over the training steps on stderr (needs tqdm)."""
    log = log or sys.stderr
    if resume_from is not None:
        run = Path(resume_from)
        config = load_config(run, TASK, Config)
        _, meta = load_checkpoint(run)  # a damaged checkpoint is reported before anything runs
        if finished(run, "test_mae"):
            raise ValueError(f"the run in {run} has finished (its test scores end metrics.jsonl); "
                             "start a new run to train again.")
        if "data_sha256" not in meta:
            raise ValueError(f"the run in {run} was made by a version of unrolled whose forecasting runs could "
                             "not be resumed; start a new run.")
        sha256 = file_sha256(config.data) if Path(config.data).is_file() else None
        if sha256 is not None and sha256 != meta["data_sha256"]:
            raise ValueError(f"the data file {config.data} has changed since the run in {run} started, "
                             "so it cannot continue exactly; start a new run.")
    elif config is None or out is None:
        raise ValueError("give a config and --out DIR (a new run folder), or --resume DIR.")
    else:  # an absolute path, so the run resumes and predicts from any folder
        config = dataclasses.replace(config, data=str(Path(config.data).resolve()))
        sha256 = None
    saved_ar = None  # a resumed run corrects the AR of fewer columns it chose at the start
    if resume_from is not None and config.ar_features is not None:
        _, ar, _, data_meta = load_data(run, config)
        saved_ar = (ar, data_meta["ar_choice"])
    data = prepare(config, ar=saved_ar)   # a missing file or column fails here, before the run folder is touched
    baseline_forecasts(data, data.test[:1])   # a baseline or MASE that cannot run fails before the run folder exists
    mase_scale = data.mase_scale()
    model = build(config, len(data.series.columns))
    task = ForecastTask(model, data, config)
    optimizer, schedule = make_optimizer(task, config)
    meta = {"config": "config.json", "data_sha256": sha256 or file_sha256(config.data)}
    if resume_from is not None:
        state, arrays = resume(run, task, optimizer, schedule)
        task.load_state_arrays(arrays)
        print(f"continuing {run} from step {state.step}.", file=log)
    else:
        run = create_run(out, config.to_dict())
        ar = {"ar/coef": data.ar.coef, **({} if data.ar.columns is None else {"ar/columns": data.ar.columns}),
              **({} if data.ar is data.linear_ar else {"linear_ar/coef": data.linear_ar.coef})}
        save_checkpoint(run, {**prefixed("normaliser", data.normaliser.state_dict()), **ar},
                        {"columns": data.series.columns, "report": data.series.report, "ar_choice": data.ar_choice,
                         "season": data.season, "mase_scale": mase_scale, "round_step": data.round_step,
                         "split": list(data.split.sizes)}, DATA)
        state = TrainState()
        save_training_state(run, task, optimizer, schedule, state, meta)  # resumable from the first step
        notes = data.series.report + ([data.ar_choice] if data.ar_choice else []) + rounding_note(config, data)
        for line in notes:
            print(line, file=log)
        print(f"{len(data.train)} training, {len(data.val)} validation and {len(data.test)} test windows of "
              f"{config.lookback} x {len(data.series.columns)} values.", file=log)
    state, interrupted = fit_with_early_stopping(task, run, config, optimizer, schedule, state, meta, log,
                                                 progress)
    if interrupted:
        return run, None
    started = time.perf_counter()
    try:
        results = evaluate(model, data, scale=mase_scale)
        final = {**final_record(state, results), "wall_s": round(state.wall_s + time.perf_counter() - started, 3)}
        from .forecast_report import write_outputs  # matplotlib is loaded only here
        write_outputs(run, config, data, results, read_metrics(run) + [final])
    except KeyboardInterrupt:  # stopped while reporting: resuming reports again
        return run, None
    append_metrics(run, final)  # last: the record that marks the run finished
    return run, results


# ----- forecasting from a trained run ----------------------------------------------------------------

def load_run(run) -> tuple[Config, Module, Normaliser, LinearAR, dict]:
    """The config, the best model (eval mode), the normaliser, the fitted linear AR that an "ar" base
    corrects and the data metadata (columns, cleaning report, season, split sizes) of a run."""
    run = Path(run)
    config = load_config(run, TASK, Config)
    normaliser, ar, _, meta = load_data(run, config)
    return config, load_model(run, config, len(meta["columns"])), normaliser, ar, meta


def load_model(run: Path, config: Config, n_features: int) -> Ensemble:
    """The best weights of a run, in eval mode."""
    model = build(config, n_features)
    load_weights(model, run, "best")
    return model.eval()


def load_data(run: Path, config: Config) -> tuple[Normaliser, LinearAR, LinearAR | None, dict]:
    """The normaliser, the fitted linear AR that an "ar" base corrects, the linear AR baseline (the
    same one unless --ar-features chose fewer columns; None for such a run of an older version) and
    the data metadata of a run."""
    arrays, meta = load_checkpoint(run, DATA)
    ar = LinearAR(config.ridge, columns=arrays.get("ar/columns"))    # older runs: every column
    ar.coef = arrays["ar/coef"]
    linear_ar = ar if "ar/columns" not in arrays else None
    if "linear_ar/coef" in arrays:
        linear_ar = LinearAR(config.ridge)
        linear_ar.coef = arrays["linear_ar/coef"]
    return Normaliser.from_state_dict(section(arrays, "normaliser")), ar, linear_ar, meta


def predict(run, data=None, out=None) -> Path:
    """Forecast the steps after the end of the data (the run's CSV, or `data` with the same columns).

    Writes a CSV with one row per step ahead (`step`, `time` when the series has one, the target)
    to `out` (default: forecast.csv in the run folder; a missing folder is made) and returns its path.
    """
    run = Path(run)
    config, model, normaliser, ar, meta = load_run(run)
    trained_on = config.data
    if data is not None:
        config = dataclasses.replace(config, data=str(data))
    path = output_file(out, run, (config.data, trained_on)) if out is not None else run / "forecast.csv"
    series, windows = read_as_trained(config, normaliser, meta)
    framing = Framing(windows, normaliser, config.log, config.base, ar)
    forecasts = forecast_windows(model, framing, np.array([len(series) - 1]))                      # (1, H)
    y = framing.original_units(forecasts, meta.get("round_step"))[0]     # older runs did not round
    steps = config.gap + 1 + np.arange(config.horizon)
    times = future_times(series.time, steps) if series.time is not None else None
    write_csv(path, ["step"] + (["time"] if times is not None else []) + [series.target],
              ([step] + ([times[k]] if times is not None else []) + [f"{y[k]:.6g}"] for k, step in enumerate(steps)))
    return path


def read_as_trained(config: Config, normaliser: Normaliser, meta: dict) -> tuple[Series, Windows]:
    """The series of `config.data` with a run's columns in its order, and its windows normalised as in
    training (a file too short for one lookback is refused)."""
    series = aligned(load(config), meta["columns"], config.data)
    if len(series) < config.lookback:
        raise ValueError(f"{Path(config.data).name} has {counted(len(series), 'row')} after cleaning, fewer than the "
                         f"lookback of {config.lookback} the model reads.")
    return series, Windows(normaliser.transform(model_values(series, config.log)), config.lookback, config.horizon,
                           config.gap)


def write_csv(path: Path, header: list, rows) -> None:
    """A CSV file (quoted as needed) written atomically; a missing folder is made."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text.getvalue())


def output_file(out, run, data_files, own: str = "forecast.csv", what: str = "the forecast") -> Path:
    """The file `--out` names, checked before anything is computed: not a folder, not a data file,
    not a run's own file (but `own`, which the command itself writes in its `run`)."""
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)):
        raise ValueError(f"--out must name a file to write {what} to, but {out} names a folder.")
    if path.resolve() in {Path(f).resolve() for f in data_files}:
        raise ValueError(f"--out {out} is a data file of this run; name another file.")
    return outside_runs(path, "--out", run, own)
