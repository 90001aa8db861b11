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
import re
import warnings
from pathlib import Path

import numpy as np

from ..checkpoint import load_checkpoint
from ..core.checks import counted
from ..data.windows import Split
from ..runs import load_config
from .forecast import (TASK, Config, evaluate, file_sha256, load_data, load_model, output_file, read_as_trained,
                       write_csv)
from .forecast_data import Prepared, ma_window
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
    path = output_file(out, run, (source, trained_on), "evaluation.csv", "the forecasts") if out is not None else None
    config = dataclasses.replace(config, data=str(source))
    series, windows = read_as_trained(config, normaliser, meta)
    n, season = len(series), meta["season"]
    history = max(config.lookback, season, ma_window(config, season))   # rows every baseline needs
    test_period = since is None and source.resolve() == Path(trained_on).resolve()
    if test_period:                      # training's split, test windows and MASE scale (of its training rows)
        refuse_changed(run, source)
        train_rows, val_rows, _ = meta["split"]
        split, which, scale = Split(train_rows, train_rows + val_rows, n), "the run's test period", None
        origins = windows.origins(split.val_end, n)
    else:
        start = first_row(series, since)
        split, which = Split(start, start, n), ("every window" if since is None else f"the windows from {since}")
        origins = windows.origins(start, n)
        origins = origins[origins >= history - 1]
        scale = meta.get("mase_scale", float("nan"))                      # older runs did not save it
    if len(origins) == 0:
        ahead, last = config.gap + config.horizon, series.time[-1] if series.time is not None else f"row {n - 1}"
        raise ValueError(f"{source.name} has no window to score{'' if since is None else f' from {since}'}: each "
                         f"needs {counted(history, 'row')} of history and {counted(ahead, 'step')} ahead, and the "
                         f"data ends at {last}.")
    framed = Prepared(windows, normaliser, config.log, config.base, ar, series, split, origins[:0], origins[:0],
                      origins, season, ma_window(config, season), linear_ar,       # no training windows: fits nothing
                      round_step=meta.get("round_step"))                           # older runs did not round
    results = evaluate(load_model(run, config, len(meta["columns"])), framed, origins, scale)
    results["origins"], rows = origins, windows.target_rows(origins)                # rows (B, H)
    if path is not None:
        write_forecasts(path, series, rows, results)
    when = series.time[rows] if series.time is not None else rows
    best = best_baseline(results["scores"])
    text = [f"{series.target} in {source.name}, {which}: {counted(len(origins), 'window')}, forecasts for "
            f"{'rows ' if series.time is None else ''}{when.min()} to {when.max()}.", "",
            *score_table(results["scores"]), "",
            versus_best(results["scores"]["model"]["mae"], results["scores"][f"baseline_{best}"]["mae"], best)]
    if np.isnan(results["mase_scale"]):
        text.append("MASE is left out: this run was made before runs saved its scale.")
    if linear_ar is None:
        text.append("The linear AR baseline is left out: this run was made before runs saved it beside the AR "
                    "that --ar-features chose.")
    if path is not None:
        text.append(f"Every window's forecasts: {path}")
    return results, "\n".join(text)


def refuse_changed(run: Path, source: Path) -> None:
    """The run's test period is known only in the file it trained on, unchanged."""
    saved = load_checkpoint(run)[1].get("data_sha256")
    if saved is None:
        raise ValueError(f"the run in {run} was made before runs recorded their data file, so its test period "
                         "is not known; give --since to say which forecasts to score.")
    if file_sha256(source) != saved:
        raise ValueError(f"{source.name} has changed since the run in {run} trained on it, so its test period is "
                         "no longer known; give --since to say which forecasts to score.")


def first_row(series, since) -> int:
    """The first row (after cleaning) at or after `since`: a time when the series has times, else a row number."""
    if since is None:
        return 0
    if series.time is None:
        if not str(since).isdigit():
            raise ValueError(f"--since must be a row number (from 0), as the data has no time column, "
                             f"but was given {since!r}.")
        return int(since)
    when = np.datetime64("NaT")
    if re.match(r"\d{4}(?!\d)", str(since)):                             # a year first: not "0", "-1", "19600115"
        with warnings.catch_warnings():
            warnings.simplefilter("error")                               # numpy only warns of a time zone
            try:
                when = np.datetime64(str(since))
            except (ValueError, Warning):
                pass
    if np.isnat(when):
        raise ValueError(f"--since must be a time such as {series.time[0]}, without a time zone, "
                         f"but was given {since!r}.")
    unit = np.promote_types(series.time.dtype, when.dtype)               # 1959-01-15 is after 1959-01
    return int(np.searchsorted(series.time.astype(unit), when.astype(unit)))


def write_forecasts(path: Path, series, rows: np.ndarray, results: dict) -> None:
    """One line per window and step: the target's time (or row), the step ahead, the truth, every forecast."""
    names = list(results["forecasts"])
    steps = rows[0] - results["origins"][0]                             # gap + 1 .. gap + H
    when = series.time[rows] if series.time is not None else rows       # (B, H)
    write_csv(path, ["time" if series.time is not None else "row", "step", series.target,
                     *(k.replace("baseline_", "") for k in names)],
              ([when[b, h], steps[h], *(f"{v:.6g}" for v in (results["truth"][b, h],
                                                              *(results["forecasts"][k][b, h] for k in names)))]
               for b in range(rows.shape[0]) for h in range(rows.shape[1])))
