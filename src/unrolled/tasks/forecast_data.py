"""The data side of a forecasting run: from a Config to split, normalised windows the model can read.

    data = prepare(config)                      # load, clean, split, normalise (training rows), window
    x, base = data.inputs(data.train[:64])      # (L, B, F) and (B, H): what the model reads, and builds on
    y = data.targets(data.train[:64], base)     # (B, H): what it learns to output
    data.original_units(model(x) + base)        # its forecasts in the units of the file

How the model sees the target (a `Framing`): normalised with the training period's statistics,
optionally as its log (`log`, for a positive series whose swings grow with its level), and as a
correction to a base forecast (`base`):
- "none": the model forecasts the values themselves;
- "last": the change from the window's last value; the target column of the inputs becomes the
  change from that value too, so a trending series' new levels still look familiar;
- "ar": what a linear autoregressive model (fitted on the training windows) misses, as in the
  hybrid linear + neural models of Zhang (2003) or LSTNet's autoregressive highway. It is the
  linear AR baseline, or, with `ar_features`, one that reads fewer input columns: named ones, or
  "auto", those that backward elimination keeps for the lowest validation MAE (a linear model
  given every column of a wide window can fit the training period by columns that do not help
  later, and the network then learns to correct those errors).
The other columns are only normalised. A comma-separated base ("ar,last") frames the series once
per member of an ensemble (`Framing.members`).

With `round`, the model's forecasts are rounded to a step: a given one, or ("auto") the power of
ten (at most 1) that the target is recorded in over the training period, such as whole degrees.
Under absolute error the best forecast of a value recorded in steps is a median of its
distribution over those steps, which is itself on a step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.checks import counted
from ..data.series import Series, calendar_columns, load_series, with_calendar
from ..data.windows import Normaliser, Split, Windows, chronological_split
from ..forecasting import metrics
from ..forecasting.baselines import LinearAR, fit_columns, select_columns

BASES = ("none", "last", "ar")


def parse_bases(base: str) -> list[str]:
    """"ar" -> ["ar"]; "ar,last" -> ["ar", "last"]: one ensemble member per base, each named once."""
    names = [b.strip() for b in str(base).split(",")]
    wrong = [b for b in names if b not in BASES]
    if wrong or len(set(names)) != len(names):
        raise ValueError(f"base must be one of {', '.join(BASES)} or a comma-separated list of distinct ones, "
                         f"but was given {base!r}.")
    return names


@dataclass
class Framing:
    """Normalised windows over a series, the base forecast the model corrects, and the way back."""

    windows: Windows
    normaliser: Normaliser
    log: bool
    base: str
    ar: LinearAR                             # the one an "ar" base corrects, fitted on the training windows

    def inputs(self, origins: np.ndarray, dtype=np.float64) -> tuple[np.ndarray, np.ndarray]:
        """Model inputs (L, B, F) and the base forecast (B, H) its output is added to."""
        if self.base not in BASES:
            raise ValueError(f"inputs need one base, but this framing has {self.base!r}; use members().")
        x = self.windows.inputs(origins)                                  # (L, B, F), a fresh copy
        if self.base == "ar":
            return x.astype(dtype), self.ar.predict(self.windows, origins)
        base = np.zeros((len(origins), self.windows.horizon))             # (B, H)
        if self.base == "last":
            base += x[-1, :, :1]
            x[:, :, 0] -= base[:, 0]
        return x.astype(dtype), base

    def targets(self, origins: np.ndarray, base: np.ndarray, dtype=np.float64) -> np.ndarray:
        """Model targets (B, H): the normalised values ahead, less the base forecast."""
        return (self.windows.targets(origins) - base).astype(dtype)

    def original_units(self, y: np.ndarray, step: float | None = None) -> np.ndarray:
        """Normalised target values (of the log, if any) back in the units of the file; rounded to
        multiples of `step` when given."""
        y = self.normaliser.inverse_target(y)
        y = np.exp(y) if self.log else y
        return y if step is None else np.round(y / step) * step

    def members(self) -> list["Framing"]:
        """One framing per base of a comma-separated `base` ("ar,last"), for the members of an ensemble."""
        return [dataclasses.replace(self, base=b) for b in parse_bases(self.base)]


@dataclass
class Prepared(Framing):
    """A series made ready for training: split in time, framed, windowed, with the baselines' settings."""

    series: Series
    split: Split
    train: np.ndarray                        # window origins, every `stride`-th
    val: np.ndarray
    test: np.ndarray
    season: int
    ma_window: int
    linear_ar: LinearAR                      # the baseline, reading every input column (often `ar` itself)
    ar_choice: str | None = None             # with ar_features: the columns `ar` reads, and why
    round_step: float | None = None          # the model's forecasts are rounded to multiples of this

    def mase_scale(self) -> float:
        """MASE's denominator: the seasonal naive forecast's MAE over the training period."""
        if self.split.train_end <= self.season:
            raise ValueError(f"MASE is scaled by the seasonal naive forecast's error over the training period, but "
                             f"that period, {counted(self.split.train_end, 'row')}, is no longer than the season of "
                             f"{self.season}; give a shorter --season or a longer training period.")
        return metrics.naive_scale(self.series.target_values[:self.split.train_end], self.season)


def load(config) -> Series:
    if not config.data:
        raise ValueError("give the CSV file to learn from with --data.")
    if not config.target:
        raise ValueError("give the column to forecast with --target.")
    series = load_series(config.data, config.target, config.features, config.time_col, config.missing,
                         config.categorical, config.resample)
    return with_calendar(series) if config.calendar else series


def model_values(series: Series, log: bool) -> np.ndarray:
    """The series' values as the model sees them: with log=True the target column is log(target)."""
    if not log:
        return series.values
    if series.target_values.min() <= 0:
        raise ValueError(f"--log needs a target above zero everywhere, but '{series.target}' goes down to "
                         f"{series.target_values.min():g}.")
    values = series.values.copy()
    values[:, 0] = np.log(values[:, 0])
    return values


def refuse_constant_target(series: Series, train: np.ndarray, source) -> None:
    """A target that does not change over the training period cannot be normalised or learned."""
    if train.std() <= Normaliser.MIN_STD:
        raise ValueError(f"the target column '{series.target}' of {Path(source).name} does not change over the "
                         f"{counted(len(train), 'row')} of the training period (it is {series.target_values[0]:g}), "
                         "so there is nothing to learn; choose another --target or a longer training period.")


def prepare(config, series: Series | None = None, ar: tuple[LinearAR, str] | None = None) -> Prepared:
    """Split, normalise (training rows only) and window the series; every size is checked here.

    `ar`: the AR of fewer columns that an "ar" base corrects and the sentence on it, as a run saved
    them (a resumed run corrects the AR it started with, not one chosen again)."""
    series = series if series is not None else load(config)
    n, ahead = len(series), config.gap + config.horizon
    need = config.lookback + ahead
    if n < need:
        raise ValueError(f"the series has {counted(n, 'row')}, too short for a lookback of {config.lookback} plus "
                         f"{counted(ahead, 'step')} ahead (at least {counted(need, 'row')}).")
    split = chronological_split(n, config.split, config.test_last, config.val_last)
    if split.train_end < need:
        raise ValueError(f"the training period has {counted(split.train_end, 'row')}, too short for a lookback of "
                         f"{config.lookback} plus {counted(ahead, 'step')} ahead (at least {counted(need, 'row')}).")
    for name, rows in (("validation", split.sizes[1]), ("test", split.sizes[2])):
        if rows < ahead:
            raise ValueError(f"the {name} period has {counted(rows, 'row')}, fewer than the "
                             f"{counted(ahead, 'step')} ahead that one forecast covers.")
    values = model_values(series, config.log)
    refuse_constant_target(series, values[:split.train_end, 0], config.data)
    too_large = np.flatnonzero(np.abs(values).max(axis=0) > 1e150)      # their squares would overflow
    if too_large.size:
        raise ValueError(f"column '{series.columns[too_large[0]]}' of {Path(config.data).name} holds values too "
                         f"large to compute with (up to {np.abs(values[:, too_large[0]]).max():g}); rescale it.")
    normaliser = Normaliser.fit(values[:split.train_end])
    windows = Windows(normaliser.transform(values), config.lookback, config.horizon, config.gap)
    train, val = windows.origins(0, split.train_end), windows.origins(split.train_end, split.val_end)
    equations = LinearAR(config.ridge).normal_equations(windows, train)
    linear_ar = LinearAR(config.ridge).solve(*equations, len(train))
    if config.ar_features is None:
        ar, ar_choice = linear_ar, None
    else:
        ar, ar_choice = ar or fewer_columns_ar(config, series, normaliser, windows, train, val, equations)
    season = config.season if config.season is not None else series.default_season()
    test = windows.origins(split.val_end, n)
    if config.ma_window is not None and config.ma_window > test[0] + 1:   # the moving average would be left out
        raise ValueError(f"--ma-window {config.ma_window} averages more rows than come before the first test "
                         f"forecast ({test[0] + 1}); give at most {test[0] + 1}.")
    return Prepared(windows, normaliser, config.log, config.base, ar, series, split, train[::config.stride], val,
                    test, season, ma_window(config, season), linear_ar, ar_choice,
                    round_step(config, series, split.train_end))


def on_step(values: np.ndarray, step: float) -> np.ndarray:
    """Which values are whole multiples of `step`, up to the rounding errors of reading them."""
    ratio = values / step
    return np.isclose(ratio, np.round(ratio), rtol=1e-13, atol=1e-9)


def recorded_step(values: np.ndarray) -> float | None:
    """The largest power of ten, at most 1, that every value is a whole multiple of (1 for whole
    degrees, 0.1 for tenths), or None if none down to 1e-6 is."""
    return next((10.0 ** -k for k in range(7) if on_step(values, 10.0 ** -k).all()), None)


def round_step(config, series: Series, train_end: int) -> float | None:
    """The step the model's forecasts are rounded to: None (no `round`), the one given, or ("auto")
    the step of the target's values in the training period, those the file holds (not interpolated)."""
    if config.round is None:
        return None
    train = series.target_values[:train_end]
    if config.round != "auto":
        if not np.isfinite(np.abs(train).max() / config.round) or config.round > np.ptp(train):
            raise ValueError(f"--round {config.round:g} is no step to round '{series.target}' to: its values in the "
                             f"training period go from {train.min():g} to {train.max():g}.")
        return config.round
    values = train if series.recorded is None else train[series.recorded[:train_end]]
    step = recorded_step(values)
    if step is None:
        means = " (a mean of resampled rows)" if config.resample else ""
        raise ValueError(f"--round auto rounds to the step the target is recorded in, but '{series.target}' holds "
                         f"{values[~on_step(values, 1e-6)][0]:.10g}{means} in the training period, on no power of "
                         "ten down to 1e-06; give the step as --round STEP.")
    return step


def rounding_note(config, data: Prepared) -> list[str]:
    """The sentence on the rounding of the model's forecasts, if any (for the log and report.md)."""
    if data.round_step is None:
        return []
    why = f", the step '{data.series.target}' is recorded in over the training period" if config.round == "auto" else ""
    return [f"the model's forecasts are rounded to multiples of {data.round_step:g}{why}."]


def ma_window(config, season: int) -> int:
    """The moving-average baseline's window: --ma-window, or the season, or (no season) the lookback."""
    return config.ma_window if config.ma_window is not None else (season if season > 1 else config.lookback)


def fewer_columns_ar(config, series: Series, normaliser: Normaliser, windows: Windows, train: np.ndarray,
                     val: np.ndarray, equations) -> tuple[LinearAR, str]:
    """The linear AR of an "ar" base over the columns `config.ar_features` names (the target and the
    calendar columns always), or over those backward elimination keeps ("auto"); and a sentence on it."""
    calendar = len(calendar_columns(series)) if config.calendar else 0
    groups: dict[str, list[int]] = {}       # input columns by the file's column (one-hot labels together)
    for j, source in enumerate(series.sources[1:len(series.columns) - calendar], start=1):
        groups.setdefault(source, []).append(j)
    besides = " and the calendar" if calendar else ""
    if config.ar_features == "auto":
        ar, kept, steps = select_columns(windows, train, val, groups, config.ridge, equations)
        said = ", then ".join(f"{normaliser.std[0] * v:.4g} {'with every column' if k == 'all' else 'without ' + k[1:]}"
                              for k, v in steps.items())
        left_out = ", ".join(g for g in groups if g not in kept) or "no column"
        return ar, (f"the linear AR that the 'ar' base corrects leaves out {left_out}, by backward elimination on "
                    f"the validation period (its MAE{' of the log' if config.log else ''} there {said}).")
    unknown = [name for name in config.ar_features if name not in groups]
    if unknown:
        raise ValueError(f"--ar-features names {', '.join(map(repr, unknown))}, but the inputs besides the "
                         f"target{besides} are {', '.join(groups) or 'none'}.")
    kept = list(dict.fromkeys(config.ar_features))
    columns = [0, *(j for g in kept for j in groups[g]), *range(len(series.columns) - calendar, len(series.columns))]
    reads = f"{', '.join(kept)} besides the target{besides}" if kept else f"the target{besides}"
    return (fit_columns(windows, equations, len(train), columns, config.ridge),
            f"the linear AR that the 'ar' base corrects reads only {reads}, as --ar-features names them.")


def aligned(series: Series, columns: list[str], source) -> Series:
    """The series with the trained columns in the trained order: a label the new data lacks becomes
    a column of zeros; a column never seen in training, or a missing numeric one, is an error."""
    index = {name: j for j, name in enumerate(series.columns)}
    extra = [name for name in series.columns if name not in columns]
    if extra:
        raise ValueError(f"{Path(source).name} has columns the model was not trained with: {', '.join(extra)}.")
    label_columns = {s for s, name in zip(series.sources, series.columns) if s != name}   # one-hot encoded here
    sources = [next((s for s in label_columns if name.startswith(f"{s}=")), name) for name in columns]
    values = np.zeros((len(series), len(columns)))
    for j, name in enumerate(columns):
        if name in index:
            values[:, j] = series.values[:, index[name]]
        elif sources[j] == name:
            raise ValueError(f"{Path(source).name} lacks the column '{name}' that the model was trained with.")
    return Series(values, list(columns), series.time, series.report, sources)


def future_times(time: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Timestamps `steps` typical intervals after the last one, in the time's own unit. A series of
    month starts or month ends (monthly, quarterly, yearly dates such as 1961-01-01 or 2020-03-31)
    steps in calendar months, so its dates stay on the 1st or the last day; any other steps by its
    median interval."""
    months = time.astype("datetime64[M]")
    day = np.timedelta64(1, "D").astype(f"timedelta64[{np.datetime_data(time.dtype)[0]}]")
    starts = (months == time).all()
    ends = (time.astype("datetime64[D]") == time).all() and ((time + day).astype("datetime64[M]") > months).all()
    if starts or ends:
        ahead = months[-1] + steps * np.int64(np.median(np.diff(months).astype(np.int64)))   # (H,) months
        return ahead.astype(time.dtype) if starts else (ahead + 1).astype(time.dtype) - day
    interval = np.int64(np.median(np.diff(time).astype(np.int64)))
    return time[-1] + (steps * interval).astype(f"timedelta64[{np.datetime_data(time.dtype)[0]}]")
