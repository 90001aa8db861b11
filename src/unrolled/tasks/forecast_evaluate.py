"""Scoring a trained forecasting run on data: the model against the baselines on every window.

    results, text = evaluate_run("runs/beijing")                  # its test period again, as training scored it
    results, text = evaluate_run("runs/beijing", data="newer.csv", since="2015-01-01", out="forecasts.csv")

The windows scored are those whose first forecast step is at or after `since` (a time, or a row
number of a series without times) and that have the history every baseline needs. Without
`since` they are the run's test period on the run's own, unchanged CSV, and every window on other
data. Nothing is fitted again: the normalisation and the linear AR are training's, and MASE
divides by the training period's seasonal naive error, so the scores compare with training's.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint
from ..data.windows import Split, Windows
from ..runs import atomic_write_text, load_config
from .forecast import (TASK, Config, evaluate, file_sha256, load_data, load_model, output_file)
from .forecast_data import Prepared, aligned, load, ma_window, model_values
from .forecast_report import best_baseline, score_table, versus_best


def evaluate_run(run, data=None, since=None, out=None) -> tuple[dict, str]:
    """The run's model and the baselines on the windows of `data` (default the run's CSV) described
    above: `evaluate`'s results (with `origins`) and a few lines of text saying what was scored and
    how well. `out`: a CSV of every window's forecasts (target time or row, step, truth, model,
    baselines)."""
    run = Path(run)
    config = load_config(run, TASK, Config)
    normaliser, ar, linear_ar, meta = load_data(run, config)
    trained_on, source = config.data, Path(data if data is not None else config.data)
    path = output_file(out, (source, trained_on), "evaluation.csv", "the forecasts") if out is not None else None
    config = dataclasses.replace(config, data=str(source))
    series = aligned(load(config), meta["columns"], source)
    n, season = len(series), meta["season"]
    windows = Windows(normaliser.transform(model_values(series, config.log)), config.lookback, config.horizon,
                      config.gap)
    test_period = since is None and source.resolve() == Path(trained_on).resolve() \
        and file_sha256(source) == load_checkpoint(run)[1]["data_sha256"]
    if test_period:
        train_rows, val_rows, _ = meta["split"]
        start, which = train_rows + val_rows, "the run's test period"
    else:
        start = first_row(series, since)
        which = "every window" if since is None else f"the windows from {since}"
    history = max(config.lookback, season, ma_window(config, season))   # rows every baseline needs
    origins = windows.origins(start, n)
    if not test_period:                                                   # (training's test windows have them)
        origins = origins[origins >= history - 1]
    if len(origins) == 0:
        ahead, last = config.gap + config.horizon, series.time[-1] if series.time is not None else f"row {n - 1}"
        raise ValueError(f"{source.name} has no window to score{'' if since is None else f' from {since}'}: each "
                         f"needs {history} rows of history and {ahead} step{'s' * (ahead > 1)} ahead, and the "
                         f"data ends at {last}.")
    framed = Prepared(windows, normaliser, config.log, config.base, ar, series, Split(start, start, n),
                      origins[:0], origins[:0], origins, season, ma_window(config, season), linear_ar)
    results = evaluate(load_model(run, config, len(meta["columns"])), framed, origins,
                       meta.get("mase_scale", float("nan")))      # older runs did not save MASE's scale
    results["origins"] = origins
    if path is not None:
        write_forecasts(path, series, windows.target_rows(origins), results)
    rows = windows.target_rows(origins)
    when = series.time[rows] if series.time is not None else rows
    best = best_baseline(results["scores"])
    text = [f"{series.target} in {source.name}, {which}: {len(origins)} windows, forecasts for "
            f"{'rows ' if series.time is None else ''}{when.min()} to {when.max()}.", "",
            *score_table(results["scores"]), "",
            versus_best(results["scores"]["model"]["mae"], results["scores"][f"baseline_{best}"]["mae"], best)]
    if path is not None:
        text.append(f"Every window's forecasts: {path}")
    return results, "\n".join(text)


def first_row(series, since) -> int:
    """The first row at or after `since`: a time when the series has times, else a row number."""
    if since is None:
        return 0
    if series.time is None:
        if not str(since).isdigit():
            raise ValueError(f"--since must be a row number (from 0), as the data has no time column, "
                             f"but was given {since!r}.")
        return int(since)
    try:
        when = np.datetime64(str(since))
    except ValueError:
        raise ValueError(f"--since must be a time such as {series.time[0]}, but was given {since!r}.") from None
    return int(np.searchsorted(series.time, when.astype(series.time.dtype)))


def write_forecasts(path: Path, series, rows: np.ndarray, results: dict) -> None:
    """One line per window and step: the target's time (or row), the step ahead, the truth, every forecast."""
    names = list(results["forecasts"])
    first = "time" if series.time is not None else "row"
    lines = [",".join([first, "step", series.target, *(k.replace("baseline_", "") for k in names)])]
    steps = rows[0] - results["origins"][0]                             # gap + 1 .. gap + H
    for b in range(rows.shape[0]):
        for h in range(rows.shape[1]):
            when = series.time[rows[b, h]] if series.time is not None else rows[b, h]
            values = [results["truth"][b, h], *(results["forecasts"][k][b, h] for k in names)]
            lines.append(",".join([str(when), str(steps[h]), *(f"{v:.6g}" for v in values)]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(lines) + "\n")
