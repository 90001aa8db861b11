"""The outputs of a finished forecasting run: report.md and the plots (forecast, error by horizon, loss)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.checks import counted
from ..forecasting.plots import plot_error_by_horizon, plot_forecast
from ..runs import atomic_write_text
from ..viz import plot_losses
from .forecast_data import rounding_note


def best_baseline(scores: dict[str, dict]) -> str:
    """The name (without "baseline_") of the baseline with the lowest test MAE."""
    name = min((k for k in scores if k.startswith("baseline_")), key=lambda k: scores[k]["mae"])
    return name[len("baseline_"):]


def versus_best(model_mae: float, best_mae: float, best: str) -> str:
    """The model's MAE against the best baseline's, in percent; a baseline may be exact (MAE 0)."""
    if best_mae == 0:
        return f"The best baseline ({best}) is exact on the test period; the model's MAE is {model_mae:.4g}."
    change = 100 * (1 - model_mae / best_mae)
    return f"The model's MAE is {abs(change):.1f}% {'below' if change >= 0 else 'above'} the best baseline's ({best})."


def ensemble(config) -> bool:
    return "," in config.base or config.members > 1


def write_outputs(run: Path, config, data, results: dict, records: list[dict]) -> None:
    """report.md, plots/forecast.png, plots/error-by-horizon.png and plots/loss.png of a finished run."""
    series, w = data.series, data.windows
    x = series.time if series.time is not None else np.arange(len(series))
    steps = w.gap + 1 + np.arange(w.horizon)
    best = best_baseline(results["scores"])
    title = f"{series.target}, {config.cell.upper()} {config.model}"
    if ensemble(config):
        times = f"{config.members} x " if config.members > 1 else ""
        title += f" ensemble ({times}{config.base})"
    elif config.base == "ar":
        title += " + linear AR"
    plot_forecast(x, series.target_values, w.target_rows(data.test), results["forecasts"]["model"],
                  results["forecasts"][f"baseline_{best}"], best, int(data.test[-1]), config.lookback,
                  run / "plots" / "forecast.png", title)
    plot_error_by_horizon(steps, {k.replace("baseline_", ""): v["mae"] for k, v in results["curves"].items()},
                          run / "plots" / "error-by-horizon.png", title=f"{title}: test MAE by horizon")
    epochs = [r for r in records if "val_loss" in r]
    if epochs:
        plot_losses(epochs, run / "plots" / "loss.png", title=title, unit=f"{config.loss}, normalised")
    atomic_write_text(run / "report.md", report(config, data, results, records[-1], best))


def score_table(scores: dict[str, dict]) -> list[str]:
    """A Markdown table of the model's and the baselines' errors, best first ("-": no MASE scale)."""
    lines = ["| forecast | MAE | RMSE | sMAPE % | MASE |", "|---|---|---|---|---|"]
    for name, s in sorted(scores.items(), key=lambda kv: kv[1]["mae"]):
        shown = "**model**" if name == "model" else name.replace("baseline_", "")
        mase = "-" if np.isnan(s["mase"]) else f"{s['mase']:.4g}"
        lines.append(f"| {shown} | {s['mae']:.4g} | {s['rmse']:.4g} | {s['smape']:.4g} | {mase} |")
    return lines


def report(config, data, results: dict, final: dict, best: str) -> str:
    series, split = data.series, data.split
    lines = [f"# Forecasting {series.target} from {Path(config.data).name}", ""]
    ahead = f"steps {config.gap + 1}..{config.gap + config.horizon}" if config.horizon > 1 else f"step {config.gap + 1}"
    if ensemble(config):
        models = f"{config.members} such models" if config.members > 1 else "one such model"
        corrects = f"; an ensemble of {models} per base ({config.base}), forecasts averaged"
    else:
        corrects = {"none": "", "last": ", forecasting changes from the last value",
                    "ar": ", forecasting corrections to the linear AR"}[config.base]
    dropouts = "".join(f", {name} {p}" for name, p in (("dropout", config.dropout),
                                                       ("recurrent dropout", config.recurrent_dropout)) if p)
    lines += [f"{config.cell.upper()} {config.model} model, {config.layers} x {config.hidden} units{dropouts}, "
              f"{config.loss} loss{corrects}; {config.lookback} steps of {counted(len(series.columns), 'column')} in, "
              f"{ahead} ahead out.",
              f"Rows: {split.sizes[0]} train, {split.sizes[1]} validation, {split.sizes[2]} test "
              f"({len(data.train)}, {len(data.val)} and {len(data.test)} windows); season {data.season}.",
              f"Training: {counted(final['epoch'], 'epoch')} ({counted(final['step'], 'step')}) in "
              f"{final['elapsed_s']:.0f} s; best validation loss {final['best_val_loss']:.4f}.", ""]
    lines += ["## Test errors (original units)", "", *score_table(results["scores"])]
    model_mae, best_mae = results["scores"]["model"]["mae"], results["scores"][f"baseline_{best}"]["mae"]
    lines += ["", f"{versus_best(model_mae, best_mae, best)} MASE is scaled by the seasonal naive MAE on the "
              f"training period ({results['mase_scale']:.4g}).", ""]
    if config.horizon > 1:
        curves = results["curves"]
        names = [k.replace("baseline_", "") for k in curves]
        lines += ["## MAE by step ahead", "", "| step | " + " | ".join(names) + " |",
                  "|---" * (len(curves) + 1) + "|"]
        for i in range(config.horizon):
            errors = " | ".join(f"{c['mae'][i]:.4g}" for c in curves.values())
            lines.append(f"| {config.gap + 1 + i} | {errors} |")
        lines.append("")
    notes = (series.report + [f"columns: {', '.join(series.columns)}"] + ([data.ar_choice] if data.ar_choice else [])
             + rounding_note(config, data))
    lines += ["## Data", ""] + [f"- {line}" for line in notes] + [""]
    return "\n".join(lines)
