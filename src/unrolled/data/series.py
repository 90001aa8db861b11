"""A time series from a CSV file: named target and features, timestamps, cleaned, optionally resampled.

    series = load_series("pollution.csv", target="TEMP")
    series.values      # (N, F) float64, the target in column 0, then the input features
    series.columns     # ["TEMP", "pm2.5", "DEWP", "PRES", "cbwd=NE", ...]
    series.time        # (N,) datetime64, from "year/month/day/hour" composed into one timestamp
    series.report      # what cleaning did, one sentence each ("interpolated 2067 missing values ...")

Choices, each reported in `series.report`:
- time: `time_col` names the column of timestamps; without it, columns named year/month/day/hour
  (any case) are composed into one, or else a first column holding dates is used. Rows are put in
  time order. Time columns are never features. A time that cannot be read is an error naming its row
  (in a first column, once most of its cells look like dates).
- features: by default every other column, except one that only counts rows (1, 2, 3, ...). The
  target is always an input too (the model is autoregressive), placed first.
- missing values (NA, ?, empty, ...): `missing="interpolate"` fills numbers linearly in time (the
  nearest value before the first or after the last known one) and labels with the previous label;
  `missing="drop"` drops every row with a missing value. A number that is not finite ("inf",
  "1e400") is an error naming its row.
- labels (a column that is not all numbers): `categorical="onehot"` makes one 0/1 column per label
  (at most `max_categories`), `categorical="drop"` leaves the column out. The target must be numeric.
- `resample="daily"` (or hourly, monthly, yearly) averages the rows of each period.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.checks import counted
from .series_io import (compose_times, first_non_finite, first_non_number, looks_like_times, missing_mask,
                        parse_numeric, parse_times, read_csv_columns)

TIME_PARTS = ("year", "month", "day", "hour", "minute")
RESAMPLE_UNITS = {"hourly": "h", "daily": "D", "monthly": "M", "yearly": "Y"}
# a season (in steps) that suits each sampling frequency when none is given
DEFAULT_SEASONS = {"hourly": 24, "daily": 7, "weekly": 52, "monthly": 12, "quarterly": 4}


@dataclass
class Series:
    """A cleaned multivariate series: every column numeric, no missing values, rows in time order."""

    values: np.ndarray                    # (N, F) float64, column 0 is the target
    columns: list[str]                    # F names; one-hot columns are "<column>=<label>"
    time: np.ndarray | None = None        # (N,) datetime64, or None when the file has no time
    report: list[str] = field(default_factory=list)
    sources: list[str] | None = None      # F names: the file's column each came from (default `columns`)
    recorded: np.ndarray | None = None    # (N,) bool: rows whose target is the file's own value, not one
                                          # interpolated in a gap (None: every row)

    def __post_init__(self):
        if self.sources is None:
            self.sources = list(self.columns)

    @property
    def target(self) -> str:
        return self.columns[0]

    @property
    def target_values(self) -> np.ndarray:
        return self.values[:, 0]

    def __len__(self) -> int:
        return len(self.values)

    @property
    def frequency(self) -> str | None:
        """"hourly", "daily", "weekly", "monthly", "quarterly", "yearly" from the typical step, or None."""
        if self.time is None or len(self.time) < 2:
            return None
        step_h = float(np.median(np.diff(self.time.astype("datetime64[m]").astype(np.int64)))) / 60.0
        for name, low, high in (("hourly", 1, 1), ("daily", 24, 24), ("weekly", 168, 168),
                                ("monthly", 28 * 24, 31 * 24), ("quarterly", 89 * 24, 92 * 24),
                                ("yearly", 365 * 24, 366 * 24)):
            if low <= step_h <= high:
                return name
        return None

    def default_season(self) -> int:
        """The season of the sampling frequency (24 for hourly, 12 for monthly, ...), 1 if unknown."""
        return DEFAULT_SEASONS.get(self.frequency, 1)


def load_series(path, target: str, features: list[str] | None = None, time_col: str | None = None,
                missing: str = "interpolate", categorical: str = "onehot", resample: str | None = None,
                max_categories: int = 20) -> Series:
    """Read and clean a CSV file into a Series (see the module docstring for every choice)."""
    if missing not in ("interpolate", "drop"):
        raise ValueError(f"missing must be 'interpolate' or 'drop', but was given {missing!r}.")
    if categorical not in ("onehot", "drop"):
        raise ValueError(f"categorical must be 'onehot' or 'drop', but was given {categorical!r}.")
    if resample is not None and resample not in RESAMPLE_UNITS:
        raise ValueError(f"resample must be one of {', '.join(RESAMPLE_UNITS)}, but was given {resample!r}.")
    path = Path(path)
    table = read_csv_columns(path)
    names = list(table)
    for name in [target, *(features or []), *([time_col] if time_col else [])]:
        if name not in table:
            raise ValueError(f"column '{name}' is not in {path.name}, whose columns are {', '.join(names)}.")
    report: list[str] = []

    time, time_names = _find_time(table, time_col, report)
    inputs = _choose_columns(table, target, features, time_names, report)
    order = None
    if time is not None:
        order = np.argsort(time, kind="stable")
        if (np.diff(time[order]) == np.timedelta64(0)).any():
            dup = time[order][1:][np.diff(time[order]) == np.timedelta64(0)][0]
            raise ValueError(f"the time column of {path.name} must hold each timestamp once, but {dup} appears twice.")
        if (order != np.arange(len(order))).any():
            report.append("rows were sorted into time order.")
        time = time[order]

    numeric, labels = {}, {}
    for name in inputs:
        text = table[name] if order is None else table[name][order]
        values = parse_numeric(text)
        if values is None:
            _refuse_infinite(table[name], name, target)     # the file's order, for the row number
        if name == target:
            if values is None:
                raise ValueError(f"target column '{target}' must hold numbers, but holds {first_non_number(text)!r}.")
            if np.isnan(values).all():
                raise ValueError(f"target column '{target}' must hold numbers, but every value is missing.")
        if values is not None and np.isnan(values).all():
            report.append(f"column '{name}' has no values and is not used.")
        elif values is not None:
            numeric[name] = values
        elif categorical == "drop":
            report.append(f"column '{name}' holds labels and is not used (categorical='drop').")
        elif len(set(text[~missing_mask(text)])) > max_categories:
            report.append(f"column '{name}' holds more than {max_categories} different labels and is not used.")
        else:
            labels[name] = text

    target_gaps = np.isnan(numeric[target])                                # (N,) before they are filled
    keep = _handle_missing(inputs, numeric, labels, time, missing, report)
    recorded = ~target_gaps if missing == "interpolate" and target_gaps.any() else None
    if time is not None and keep is not None:
        time = time[keep]
    columns, sources, blocks = [], [], []
    for name in inputs:
        if name in numeric:
            columns.append(name)
            sources.append(name)
            blocks.append(numeric[name][:, None])
        elif name in labels:
            present = labels[name][~missing_mask(labels[name])]
            kinds = sorted(set(present))
            columns += [f"{name}={kind}" for kind in kinds]
            sources += [name] * len(kinds)
            blocks.append((labels[name][:, None] == np.array(kinds)[None, :]).astype(np.float64))  # (N, K)
            report.append(f"column '{name}' holds labels, one-hot encoded as {counted(len(kinds), 'column')} "
                          f"({', '.join(kinds)}).")
    values = np.concatenate(blocks, axis=1)                                # (N, F)
    if len(values) < 2:
        raise ValueError(f"expected at least 2 rows of data in {path.name} after cleaning, but {len(values)} remain.")
    series = Series(values, columns, time, report, sources, recorded)
    if resample is not None:
        series = _resample(series, resample)
    return series


def _find_time(table: dict, time_col: str | None, report: list[str]) -> tuple[np.ndarray | None, set[str]]:
    """(timestamps or None, the names of the columns they came from)."""
    if time_col is not None:
        return parse_times(table[time_col], time_col), {time_col}
    parts = {name.lower(): name for name in table if name.lower() in TIME_PARTS}
    if "year" in parts:
        ints = {part: _whole_numbers(table[name], name) for part, name in parts.items()}
        report.append(f"time composed from the columns {', '.join(parts.values())}.")
        return compose_times(ints), set(parts.values())
    first = next(iter(table))
    if parse_numeric(table[first]) is None:
        try:
            times = parse_times(table[first], first)
        except ValueError:
            if looks_like_times(table[first]):       # a column of dates with a bad cell: say which
                raise
            return None, set()
        report.append(f"time taken from the column '{first}'.")
        return times, {first}
    return None, set()


def _whole_numbers(text: np.ndarray, name: str) -> np.ndarray:
    """A year/month/day/hour column as float64 whole numbers; a missing or other value names its row."""
    values = parse_numeric(text)
    if values is not None and not np.isnan(values).any() and (values == np.round(values)).all():
        return values
    row, cell = next((row, cell) for row, cell in enumerate(text, start=1) if not _is_whole(cell))
    raise ValueError(f"time column '{name}' must hold whole numbers in every row, but data row {row} "
                     f"holds {str(cell)!r}.")


def _is_whole(cell: str) -> bool:
    try:
        return float(cell) == round(float(cell))
    except (ValueError, OverflowError):               # a label, a missing value, inf
        return False


def _refuse_infinite(text: np.ndarray, name: str, target: str) -> None:
    """A column of numbers with an infinite one ("inf", "1e400") is an error naming the row, not labels."""
    bad = first_non_finite(text)
    if bad is None or (name != target and first_non_number(text)):
        return                                       # a column of labels may hold "inf" as a label
    what = "target column" if name == target else "column"
    raise ValueError(f"{what} '{name}' must hold finite numbers, but data row {bad[0]} holds {bad[1]!r}.")


def _choose_columns(table: dict, target: str, features: list[str] | None, time_names: set[str],
                    report: list[str]) -> list[str]:
    """The input columns: the target first, then the features in file order."""
    if features is not None:
        chosen = [target] + [name for name in table if name in features and name != target]
        clash = sorted(set(chosen) & time_names)
        if clash:
            raise ValueError(f"features must not include the time column(s), but were given {', '.join(clash)}.")
        return chosen
    if target in time_names:
        raise ValueError(f"the target must not be a time column, but was given '{target}'.")
    chosen = [target]
    for name in table:
        if name == target or name in time_names:
            continue
        if _counts_rows(table[name]):
            report.append(f"column '{name}' only counts rows ({table[name][0]}, {table[name][1]}, ...) "
                          "and is not used.")
            continue
        chosen.append(name)
    return chosen


def _counts_rows(text: np.ndarray) -> bool:
    values = parse_numeric(text)
    return values is not None and len(values) > 2 and bool((np.diff(values) == 1).all())


def _handle_missing(names: list[str], numeric: dict, labels: dict, time, missing: str,
                    report: list[str]) -> np.ndarray | None:
    """Interpolate or drop missing values in place; returns the rows kept (None: all of them)."""
    gaps = {name: np.isnan(numeric[name]) if name in numeric else missing_mask(labels[name])
            for name in names if name in numeric or name in labels}
    counts = {name: int(g.sum()) for name, g in gaps.items() if g.any()}
    if not counts:
        return None
    detail = ", ".join(f"{name}: {n}" for name, n in counts.items())
    if missing == "drop":
        bad = np.any([g for g in gaps.values()], axis=0)                   # (N,)
        keep = ~bad
        for store in (numeric, labels):
            for name in store:
                store[name] = store[name][keep]
        report.append(f"dropped {counted(int(bad.sum()), 'row')} with missing values ({detail}).")
        return keep
    n = len(next(iter(gaps.values())))
    x = np.arange(n, dtype=np.float64) if time is None else time.astype("datetime64[s]").astype(np.float64)
    for name, values in numeric.items():
        gap = gaps[name]
        if gap.any():
            values[gap] = np.interp(x[gap], x[~gap], values[~gap])
    for name, text in labels.items():
        gap = gaps[name]
        if gap.any():
            known = np.flatnonzero(~gap)
            before = np.searchsorted(known, np.arange(n), side="right") - 1  # last known row at or before
            text[:] = text[known[np.maximum(before, 0)]]
    report.append(f"interpolated {sum(counts.values())} missing values in time ({detail}).")
    return None


def _resample(series: Series, resample: str) -> Series:
    """Average the rows of each hour, day, month or year."""
    if series.time is None:
        raise ValueError(f"resample={resample!r} needs a time column, but the file has none; name it with time_col.")
    unit = RESAMPLE_UNITS[resample]
    periods = series.time.astype(f"datetime64[{unit}]")
    starts, group = np.unique(periods, return_inverse=True)
    counts = np.bincount(group).astype(np.float64)
    values = np.zeros((len(starts), series.values.shape[1]))
    np.add.at(values, group, series.values)
    values /= counts[:, None]                                             # (P, F) mean of each period
    report = series.report + [f"resampled to {resample} means: {counted(len(series), 'row')} became {len(starts)}."]
    return Series(values, series.columns, starts, report, series.sources)


CALENDAR_COLUMNS = ("day_sin", "day_cos", "year_sin", "year_cos")


def calendar_columns(series: Series) -> list[str]:
    """The columns with_calendar adds: sin/cos of the time of day when rows are less than a day
    apart, and of the time of year when they are less than a year apart."""
    if series.time is None:
        raise ValueError("calendar features need a time column, but the file has none; name it with time_col.")
    minutes = series.time.astype("datetime64[m]")
    step = float(np.median(np.diff(minutes).astype(np.float64))) if len(minutes) > 1 else 0.0
    return [*(CALENDAR_COLUMNS[:2] if step < 24 * 60 else ()), *(CALENDAR_COLUMNS[2:] if step < 365 * 24 * 60 else ())]


def with_calendar(series: Series) -> Series:
    """The series plus sin/cos of the time of day and of the time of year (see calendar_columns):
    smooth, periodic inputs a model can read."""
    columns = calendar_columns(series)
    minutes = series.time.astype("datetime64[m]")
    phase = {"day": (minutes - minutes.astype("datetime64[D]")).astype(np.float64) / (24 * 60),      # (N,) in [0, 1)
             "year": (minutes - minutes.astype("datetime64[Y]")).astype(np.float64) / (365.2425 * 24 * 60)}
    blocks = [(np.sin if name.endswith("sin") else np.cos)(2 * np.pi * phase[name.split("_")[0]]) for name in columns]
    values = np.concatenate([series.values, np.stack(blocks, axis=1)], axis=1)              # (N, F + 2k)
    report = series.report + [f"calendar features added: {', '.join(columns)}."]
    return Series(values, series.columns + columns, series.time, report, series.sources + columns, series.recorded)
