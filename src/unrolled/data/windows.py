"""Chronological splits, normalisation fitted on the training period, and sliding windows.

    split = chronological_split(len(series), fractions=(0.5, 0.25, 0.25))   # or test_last=24
    norm = Normaliser.fit(series.values[:split.train_end])                  # training rows only
    windows = Windows(norm.transform(series.values), lookback=120, horizon=24)
    train = windows.origins(0, split.train_end, stride=2)                    # every row inside training
    x, y = windows.inputs(train[:64]), windows.targets(train[:64])          # (L, B, F), (B, H)

A window is named by its origin t, the last row it reads: inputs are rows t-L+1 .. t (every
column), targets are the target column's rows t+gap+1 .. t+gap+H. `origins(start, stop)` gives the
windows whose targets all lie in rows [start, stop) and whose inputs start at row 0 or later, so
a training window never reads a validation or test row, while a test window may read the history
before the test period (as a forecast made on that day would). The arrays are views made by
`np.lib.stride_tricks.sliding_window_view`: nothing is copied until a batch is gathered.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.checks import counted


@dataclass(frozen=True)
class Split:
    """Rows [0, train_end) train, [train_end, val_end) validate, [val_end, n) test."""

    train_end: int
    val_end: int
    n: int

    @property
    def sizes(self) -> tuple[int, int, int]:
        return self.train_end, self.val_end - self.train_end, self.n - self.val_end


def chronological_split(n: int, fractions=(0.5, 0.25, 0.25), test_last: int | None = None,
                        val_last: int | None = None) -> Split:
    """Split n rows in time order by fractions, or hold out the last `test_last` (and `val_last`) rows.

    With `test_last` the rows before the test period are split between training and validation in
    the ratio of the first two fractions, unless `val_last` fixes the validation length.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) <= 0 or not abs(sum(fractions) - 1) <= 1e-6:  # a NaN fails too
        raise ValueError(f"split fractions must be three positive numbers (train, validation, test) that add up "
                         f"to 1, but were given {fractions}.")
    for name, value in (("test_last", test_last), ("val_last", val_last)):
        if value is not None and (not isinstance(value, (int, np.integer)) or value < 1):
            raise ValueError(f"{name} must be a positive number of rows, but was given {value!r}.")
    test = test_last if test_last is not None else int(round(n * fractions[2]))
    rest = n - test
    val = val_last if val_last is not None else int(round(rest * fractions[1] / (fractions[0] + fractions[1])))
    split = Split(rest - val, rest, n)
    if min(split.sizes) < 1:
        raise ValueError(f"the series has {counted(n, 'row')}, too few for training, validation and test periods "
                         f"(they would have {split.sizes[0]}, {split.sizes[1]} and {split.sizes[2]} rows).")
    return split


class Normaliser:
    """Per-column standardisation (x - mean) / std with the statistics of the rows it was fitted on."""

    MIN_STD = 1e-12                                                       # below it a column counts as constant

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)                    # (F,)
        self.std = np.asarray(std, dtype=np.float64)                      # (F,)

    @classmethod
    def fit(cls, rows: np.ndarray) -> "Normaliser":
        """Mean and standard deviation of each column of `rows`; a constant column gets std 1."""
        std = rows.std(axis=0)
        return cls(rows.mean(axis=0), np.where(std > cls.MIN_STD, std, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std

    def inverse_target(self, y: np.ndarray, column: int = 0) -> np.ndarray:
        """Normalised values of one column (the target) back in original units."""
        return y * self.std[column] + self.mean[column]

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean.copy(), "std": self.std.copy()}

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> "Normaliser":
        return cls(state["mean"], state["std"])


class Windows:
    """Sliding (lookback, horizon) windows over an (N, F) array whose column `target` is forecast."""

    def __init__(self, values: np.ndarray, lookback: int, horizon: int, gap: int = 0, target: int = 0):
        for name, v, low in (("lookback", lookback, 1), ("horizon", horizon, 1), ("gap", gap, 0)):
            if not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, but was given {v!r}.")
        if values.ndim != 2:
            raise ValueError(f"values must be a (rows, columns) array, but was given shape {values.shape}.")
        self.lookback, self.horizon, self.gap = int(lookback), int(horizon), int(gap)
        self.n = len(values)
        if self.n < self.lookback:
            raise ValueError(f"the series has {counted(self.n, 'row')}, fewer than the lookback of {self.lookback}.")
        win = np.lib.stride_tricks.sliding_window_view(values, self.lookback, axis=0)  # (N-L+1, F, L) view
        self._inputs = win.transpose(0, 2, 1)                                          # (N-L+1, L, F) view
        self._targets = np.lib.stride_tricks.sliding_window_view(values[:, target], self.horizon)  # (N-H+1, H)

    @property
    def n_features(self) -> int:
        return self._inputs.shape[2]

    def origins(self, start: int, stop: int, stride: int = 1) -> np.ndarray:
        """Origins t (int64, increasing) of the windows whose targets all lie in rows [start, stop)."""
        first = max(self.lookback - 1, start - self.gap - 1)
        last = min(stop, self.n) - self.gap - self.horizon - 1                      # inclusive
        return np.arange(first, last + 1, stride, dtype=np.int64)

    def target_rows(self, origins: np.ndarray) -> np.ndarray:
        """(B, H) row numbers of each window's targets."""
        return origins[:, None] + self.gap + 1 + np.arange(self.horizon)

    def inputs(self, origins: np.ndarray) -> np.ndarray:
        """(L, B, F) time-major inputs of the windows at `origins` (a gathered copy)."""
        return np.ascontiguousarray(self._inputs[origins - self.lookback + 1].transpose(1, 0, 2))

    def targets(self, origins: np.ndarray) -> np.ndarray:
        """(B, H) targets of the windows at `origins` (a gathered copy)."""
        return self._targets[origins + self.gap + 1]
