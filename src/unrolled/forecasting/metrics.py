"""Forecast errors in original units: MAE, RMSE, sMAPE, MASE, and their curves over the horizon.

`y` and `p` are (B, H) arrays of truths and forecasts (B windows, H steps ahead). MASE divides the
MAE by the in-sample MAE of the seasonal naive forecast on the training period (Hyndman & Koehler
2006), so 1.0 means "as good as repeating last season" and below 1 is better.
"""
from __future__ import annotations

import numpy as np


def mae(y: np.ndarray, p: np.ndarray, axis=None) -> np.ndarray | float:
    return np.mean(np.abs(y - p), axis=axis)


def rmse(y: np.ndarray, p: np.ndarray, axis=None) -> np.ndarray | float:
    return np.sqrt(np.mean((y - p) ** 2, axis=axis))


def smape(y: np.ndarray, p: np.ndarray, axis=None) -> np.ndarray | float:
    """Symmetric MAPE in percent (0..200): 200 |y - p| / (|y| + |p|), counted as 0 where both are 0."""
    den = np.abs(y) + np.abs(p)
    ratio = np.divide(np.abs(y - p), den, out=np.zeros_like(den, dtype=np.float64), where=den > 0)
    return 200.0 * np.mean(ratio, axis=axis)


def naive_scale(history: np.ndarray, season: int = 1) -> float:
    """Mean |y_t - y_{t-season}| over the training period: the denominator of MASE."""
    if len(history) <= season:
        raise ValueError(f"MASE needs more than season={season} training values, but was given {len(history)}.")
    return float(np.mean(np.abs(history[season:] - history[:-season])))


def mase(y: np.ndarray, p: np.ndarray, scale: float) -> float:
    return float(mae(y, p) / scale) if scale > 0 else float("nan")


def summary(y: np.ndarray, p: np.ndarray, scale: float) -> dict[str, float]:
    """{"mae", "rmse", "smape", "mase"} over every window and step."""
    return {"mae": float(mae(y, p)), "rmse": float(rmse(y, p)), "smape": float(smape(y, p)),
            "mase": mase(y, p, scale)}


def by_horizon(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    """{"mae": (H,), "rmse": (H,)}: the error at each step ahead."""
    return {"mae": mae(y, p, axis=0), "rmse": rmse(y, p, axis=0)}
