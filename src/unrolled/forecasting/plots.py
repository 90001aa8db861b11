"""Forecast plots: the test period with history, truth, forecast and best baseline; error by horizon.

Matplotlib through unrolled.viz (Agg backend, imported when a plot is drawn). Each function
writes one PNG and returns its path. `x` is the time axis of the whole series: datetime64
timestamps, or row numbers when the file has no time.
"""
from __future__ import annotations

import numpy as np

from ..viz import _pyplot, _save

SHOWN = 500                                 # at most this many test rows in the period panel


def plot_forecast(x: np.ndarray, y: np.ndarray, target_rows: np.ndarray, forecast: np.ndarray,
                  baseline: np.ndarray, baseline_name: str, last_origin: int, lookback: int, path,
                  title: str = "") -> object:
    """Top: the last test rows forecast H steps ahead, after some history. Bottom (H > 1): the last
    test window in full, its lookback history then every step ahead.

    `target_rows`, `forecast` and `baseline` are (B, H): the rows each test window forecasts and the
    model's and the baseline's values there, in original units; `last_origin` is the last window's
    last input row.
    """
    plt = _pyplot()
    horizon = target_rows.shape[1]
    fig, axes = plt.subplots(2 if horizon > 1 else 1, 1, figsize=(11, 7 if horizon > 1 else 3.8), squeeze=False)
    ax = axes[0, 0]
    rows = target_rows[-SHOWN:, -1]                                      # each window's last step
    first = rows[0]
    history = np.arange(max(0, first - max(lookback, len(rows) // 3)), first)
    ax.plot(x[history], y[history], color="grey", linewidth=1, label="history")
    ax.plot(x[rows], y[rows], color="black", linewidth=1.2, label="truth")
    ax.plot(x[rows], forecast[-SHOWN:, -1], color="tab:blue", linewidth=1.2, label="forecast")
    ax.plot(x[rows], baseline[-SHOWN:, -1], color="tab:orange", linewidth=1, linestyle="--",
            label=f"best baseline ({baseline_name})")
    ahead = int(target_rows[-1, -1] - last_origin)                       # steps from a window's end to its last step
    what = f"test period, each window's forecast {ahead} step{'s' if ahead > 1 else ''} ahead"
    ax.set_title(f"{title}: {what}" if title else what)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if horizon > 1:
        ax = axes[1, 0]
        ahead_rows = target_rows[-1]                                     # (H,)
        past = np.arange(max(0, last_origin - lookback + 1), last_origin + 1)
        ax.plot(x[past], y[past], color="grey", linewidth=1, label="history (lookback)")
        ax.plot(x[ahead_rows], y[ahead_rows], "o-", color="black", markersize=3, linewidth=1.2, label="truth")
        ax.plot(x[ahead_rows], forecast[-1], "o-", color="tab:blue", markersize=3, linewidth=1.2, label="forecast")
        ax.plot(x[ahead_rows], baseline[-1], "s--", color="tab:orange", markersize=3, linewidth=1,
                label=f"best baseline ({baseline_name})")
        ax.set_title("the last test window, every step ahead")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes[:, 0]:                                                # dates on both panels, slanted
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return _save(fig, path)


def plot_error_by_horizon(steps: np.ndarray, curves: dict[str, np.ndarray], path, unit: str = "",
                          title: str = "") -> object:
    """MAE at each step ahead for the model and every baseline (bars when there is one step)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.8))
    names = list(curves)
    if len(steps) == 1:
        values = [float(curves[name][0]) for name in names]
        colors = ["tab:blue" if name == "model" else "tab:grey" for name in names]
        ax.bar(names, values, color=colors)
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:.3g}", ha="center", va="bottom", fontsize=8)
        ax.set_xlabel(f"{int(steps[0])} step{'s' if steps[0] > 1 else ''} ahead")
    else:
        for name in names:
            ax.plot(steps, curves[name], "o-" if name == "model" else ".--", markersize=3,
                    linewidth=2 if name == "model" else 1, label=name)
        ax.set_xlabel("steps ahead")
        ax.legend(fontsize=8)
    ax.set_ylabel(f"test MAE{f' ({unit})' if unit else ''}")
    ax.set_title(title or "error by horizon")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return _save(fig, path)
