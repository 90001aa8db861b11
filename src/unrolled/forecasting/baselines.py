"""The baselines every forecast is compared with, each on exactly the windows the model is tested on.

    persistence(y, origins, horizon)              # the last value, for every step ahead
    seasonal_naive(y, origins, horizon, season)   # the value one season before the step forecast
    moving_average(y, origins, horizon, window)   # the mean of the last `window` values
    LinearAR(ridge).fit(windows, train_origins).predict(windows, test_origins)

`y` is the target in original units and `origins` the windows' last input rows (see
unrolled.data.windows); each function returns (B, H) forecasts of rows t+gap+1 .. t+gap+H. The
linear autoregressive model reads the same normalised (lookback, features) windows as the network
and forecasts in normalised units.
"""
from __future__ import annotations

import numpy as np

from ..core.checks import counted
from ..data.windows import Windows


def _steps(horizon: int, gap: int) -> np.ndarray:
    """(H,) how many rows ahead of the origin each forecast step is: gap+1 .. gap+H."""
    return gap + 1 + np.arange(horizon)


def persistence(y: np.ndarray, origins: np.ndarray, horizon: int, gap: int = 0) -> np.ndarray:
    """y[t] for every step: nothing changes from the last observation."""
    return np.repeat(y[origins][:, None], horizon, axis=1)                  # (B, H)


def seasonal_naive(y: np.ndarray, origins: np.ndarray, horizon: int, season: int, gap: int = 0) -> np.ndarray:
    """y[s - k*season] for step s, with k the fewest whole seasons that reach back to row t or before."""
    if season < 1:
        raise ValueError(f"season must be a positive number of steps, but was given {season!r}.")
    steps = _steps(horizon, gap)
    back = season * ((steps - 1) // season + 1)                           # (H,) a whole number of seasons
    rows = origins[:, None] + steps - back                                # (B, H), each <= its origin
    if rows.size and rows.min() < 0:
        raise ValueError(f"the seasonal naive forecast needs {counted(season, 'row')} of history before each "
                         f"window, but the first window starts after only {origins.min() + 1}.")
    return y[rows]


def moving_average(y: np.ndarray, origins: np.ndarray, horizon: int, window: int, gap: int = 0) -> np.ndarray:
    """The mean of y[t-window+1 .. t] for every step."""
    if window < 1:
        raise ValueError(f"the moving-average window must be a positive number of steps, but was given {window!r}.")
    if origins.size and origins.min() + 1 < window:
        raise ValueError(f"the moving average over {counted(window, 'step')} needs {counted(window, 'row')} of "
                         f"history before each window, but the first window has only {origins.min() + 1}.")
    csum = np.concatenate([[0.0], np.cumsum(y, dtype=np.float64)])        # (N+1,)
    means = (csum[origins + 1] - csum[origins + 1 - window]) / window     # (B,)
    return np.repeat(means[:, None], horizon, axis=1)                     # (B, H)


class LinearAR:
    """Linear autoregression: (lookback * features) window values + 1 -> H targets, ridge least squares.

    The normal equations are summed over chunks of windows (no (B, L*F) design matrix of the whole
    training period) and solved with `np.linalg.lstsq`; `ridge` times the number of windows is added
    to every weight's diagonal entry (not the intercept's), a small shrinkage that keeps the system
    well conditioned when features are collinear. `columns` (indices into the window's features)
    limits the model to those input columns; None reads them all.
    """

    def __init__(self, ridge: float = 1e-3, chunk: int = 4096, columns=None):
        if not ridge >= 0:
            raise ValueError(f"ridge must be a number >= 0, but was given {ridge!r}.")
        self.ridge, self.chunk = float(ridge), int(chunk)
        self.columns = None if columns is None else np.asarray(columns, dtype=np.int64)
        self.coef: np.ndarray | None = None                               # (L*C + 1, H)

    def _design(self, windows: Windows, origins: np.ndarray) -> np.ndarray:
        x = windows.inputs(origins)                                       # (L, B, F)
        if self.columns is not None:
            x = x[:, :, self.columns]                                     # (L, B, C)
        flat = x.transpose(1, 0, 2).reshape(len(origins), -1)             # (B, L*C)
        return np.concatenate([flat, np.ones((len(origins), 1))], axis=1)  # (B, L*C + 1)

    def normal_equations(self, windows: Windows, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A^T A (D, D) and A^T Y (D, H) over the windows at `origins`, A their design matrix."""
        if len(origins) == 0:
            raise ValueError("the linear autoregressive baseline needs at least one training window, "
                             "but was given none.")
        d = self._design(windows, origins[:1]).shape[1]
        gram, rhs = np.zeros((d, d)), np.zeros((d, windows.horizon))
        for i in range(0, len(origins), self.chunk):
            part = origins[i:i + self.chunk]
            a = self._design(windows, part)                               # (b, D)
            gram += a.T @ a
            rhs += a.T @ windows.targets(part)
        return gram, rhs

    def solve(self, gram: np.ndarray, rhs: np.ndarray, n: int) -> "LinearAR":
        """Set the weights from normal equations summed over n windows."""
        penalty = np.full(len(gram), self.ridge * n)
        penalty[-1] = 0.0                                                 # the intercept is not shrunk
        self.coef = np.linalg.lstsq(gram + np.diag(penalty), rhs, rcond=None)[0]  # (D, H)
        return self

    def fit(self, windows: Windows, origins: np.ndarray) -> "LinearAR":
        return self.solve(*self.normal_equations(windows, origins), len(origins))

    def predict(self, windows: Windows, origins: np.ndarray) -> np.ndarray:
        if self.coef is None:
            raise ValueError("LinearAR.predict needs a fitted model; call fit() first.")
        out = np.empty((len(origins), windows.horizon))
        for i in range(0, len(origins), self.chunk):
            part = origins[i:i + self.chunk]
            out[i:i + len(part)] = self._design(windows, part) @ self.coef
        return out


def fit_columns(windows: Windows, equations: tuple[np.ndarray, np.ndarray], n: int, columns,
                ridge: float = 1e-3) -> LinearAR:
    """The LinearAR of the input `columns` from the normal equations of every column over n windows
    (their rows and columns of them, as fit() over those columns alone would sum)."""
    gram, rhs = equations
    F, L = windows.n_features, windows.lookback
    columns = np.sort(np.asarray(columns, dtype=np.int64))
    rows = np.append((np.arange(L)[:, None] * F + columns).ravel(), L * F)   # their weights, then the intercept
    return LinearAR(ridge, columns=columns).solve(gram[np.ix_(rows, rows)], rhs[rows], n)


def select_columns(windows: Windows, train: np.ndarray, val: np.ndarray, groups: dict[str, list[int]],
                   ridge: float = 1e-3, equations=None) -> tuple[LinearAR, list[str], dict[str, float]]:
    """Backward elimination of input columns for a LinearAR, judged by the MAE on the validation windows.

    `groups` names sets of columns that go together (a one-hot column's indicators); columns in no
    group are always kept. From all columns, the group whose removal lowers the validation MAE most
    is removed, until no removal lowers it by more than rounding (a column of zeros stays). The
    normal equations of all columns (`equations`, or summed here) serve every candidate. Returns
    (the AR of the columns kept, the groups kept, the validation MAE after each step: "all", then
    "-<group>" per removal).
    """
    equations = equations or LinearAR(ridge).normal_equations(windows, train)
    truth = windows.targets(val)                                          # (V, H)
    every = set(range(windows.n_features))

    def fitted(removed: set[str]) -> tuple[LinearAR, float]:
        ar = fit_columns(windows, equations, len(train), sorted(every - {c for g in removed for c in groups[g]}), ridge)
        return ar, float(np.abs(ar.predict(windows, val) - truth).mean())

    removed: set[str] = set()
    ar, mae = fitted(removed)
    steps = {"all": mae}
    while len(removed) < len(groups):
        tries = {g: fitted(removed | {g}) for g in groups if g not in removed}
        best = min(tries, key=lambda g: tries[g][1])
        if tries[best][1] >= mae * (1 - 1e-9):
            break
        removed.add(best)
        ar, mae = tries[best]
        steps[f"-{best}"] = mae
    return ar, [g for g in groups if g not in removed], steps
