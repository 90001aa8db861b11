"""Determinism: the same seed and data give the same run, timings aside, bit for bit.

Two `unrolled lm train` processes on a tiny config (dropout on, so its generator matters too)
write identical metrics.jsonl records apart from the timing fields, identical samples.txt and
identical checkpoints; so do two forecasting runs, down to the forecasts `predict` writes.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from unrolled.checkpoint import load_checkpoint
from unrolled.cli import main
from unrolled.runs import read_metrics

FIXTURES = Path(__file__).parent / "fixtures"
TIMES = {"elapsed_s", "wall_s", "tokens_per_s"}
LM = ["lm", "train", "--data", str(FIXTURES / "tinyshakespeare_4k.txt"), "--hidden", "16", "--embed", "8",
      "--layers", "2", "--dropout", "0.2", "--seq-len", "8", "--batch", "4", "--lr", "0.01", "--seed", "7",
      "--epochs", "1", "--eval-every", "20"]


def _without_times(run: Path) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMES} for record in read_metrics(run)]


def _same_checkpoint(a: Path, b: Path, name: str) -> None:
    (arrays_a, meta_a), (arrays_b, meta_b) = load_checkpoint(a, name), load_checkpoint(b, name)
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        assert np.array_equal(arrays_a[key], arrays_b[key]), key
    strip = lambda meta: {k: v for k, v in meta.items() if k != "train"}
    assert strip(meta_a) == strip(meta_b)


def test_two_lm_train_processes_write_the_same_run(tmp_path):
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    runs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen([sys.executable, "-m", "unrolled.cli", *LM, "--out", str(run)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for run in runs]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    a, b = runs
    records = _without_times(a)
    assert len(records) >= 4 and records == _without_times(b)
    samples = (a / "samples.txt").read_text()
    assert samples.count("=== step") == len(records) and samples == (b / "samples.txt").read_text()
    for name in ("checkpoint", "best"):
        _same_checkpoint(a, b, name)


def test_two_forecasting_runs_write_the_same_metrics_and_forecasts(tmp_path, capsys):
    flags = ["forecast", "train", "--data", str(FIXTURES / "beijing_pm25_head.csv"), "--target", "TEMP",
             "--lookback", "12", "--horizon", "3", "--hidden", "8", "--dropout", "0.1", "--layers", "2",
             "--epochs", "3", "--seed", "4"]
    runs = [tmp_path / "a", tmp_path / "b"]
    for run in runs:
        assert main([*flags, "--out", str(run)]) == 0
        assert main(["forecast", "predict", str(run)]) == 0
    capsys.readouterr()
    a, b = runs
    assert len(_without_times(a)) == 4 and _without_times(a) == _without_times(b)
    _same_checkpoint(a, b, "best")
    assert (a / "forecast.csv").read_text() == (b / "forecast.csv").read_text()
    assert json.loads((a / "config.json").read_text()) == json.loads((b / "config.json").read_text())
