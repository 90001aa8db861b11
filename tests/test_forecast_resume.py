"""`unrolled forecast train --resume`: a run stopped by Ctrl-C, a crash or a kill during its evaluation
continues to exactly the run that was never stopped; a finished run, a changed data file and extra
flags are refused in one sentence."""
import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from unrolled.checkpoint import load_checkpoint
from unrolled.cli import main
from unrolled.tasks import forecast, forecast_report

AIRLINE = Path(__file__).parent / "fixtures" / "airline-passengers.csv"
# the plateau schedule with a short patience and early stopping: both counts must survive a stop (and the
# dropout masks' generators)
FLAGS = ["--data", str(AIRLINE), "--target", "Passengers", "--test-last", "24", "--val-last", "12", "--lookback", "12",
         "--log", "--base", "ar,last", "--hidden", "6", "--batch", "16", "--lr", "0.02", "--lr-patience", "0",
         "--epochs", "14", "--patience", "5", "--dropout", "0.1", "--recurrent-dropout", "0.2", "--seed", "3"]
TIMES = ("elapsed_s", "wall_s", "tokens_per_s")


def records(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMES}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path) -> None:
    assert records(a) == records(b)
    for name in ("best", "checkpoint"):
        arrays_a, arrays_b = load_checkpoint(a, name)[0], load_checkpoint(b, name)[0]
        assert sorted(arrays_a) == sorted(arrays_b)
        for key in arrays_a:
            assert np.array_equal(arrays_a[key], arrays_b[key]), (name, key)
    report = lambda run: re.sub(r"steps\) in \d+ s", "steps) in - s", (run / "report.md").read_text())
    assert report(a) == report(b)                               # the training time aside


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    run = tmp_path_factory.mktemp("reference") / "run"
    assert main(["forecast", "train", *FLAGS, "--out", str(run)]) == 0
    lrs = [r["lr"] for r in records(run)[:-1]]
    assert lrs[-1] < lrs[0] and len(lrs) < 14          # the plateau halved the lr, and training stopped early
    return run


def ctrl_c_at(monkeypatch, step: int) -> None:
    """Press Ctrl-C during training step `step` (counted from this call)."""
    train_batch, calls = forecast.ForecastTask.train_batch, [0]

    def pressed(self, epoch, index):
        calls[0] += 1
        if calls[0] == step:
            os.kill(os.getpid(), signal.SIGINT)
        return train_batch(self, epoch, index)

    monkeypatch.setattr(forecast.ForecastTask, "train_batch", pressed)


@pytest.mark.parametrize("step", [17, 12])  # inside the third epoch of six batches; the second's last batch
def test_ctrl_c_then_resume_equals_the_run_never_stopped(reference, tmp_path, monkeypatch, capsys, step):
    run = tmp_path / "run"
    ctrl_c_at(monkeypatch, step)
    assert main(["forecast", "train", *FLAGS, "--out", str(run)]) == 130
    assert f"interrupted at step {step}: checkpoint saved; continue with `unrolled forecast train --resume {run}`" \
        in capsys.readouterr().err
    assert load_checkpoint(run)[1]["step"] == step and not (run / "report.md").exists()
    monkeypatch.undo()
    assert main(["forecast", "train", "--resume", str(run)]) == 0
    assert_same_run(reference, run)


def test_a_resumed_run_with_the_input_lasso_and_the_ar_of_fewer_columns_equals_the_run_never_stopped(
        tmp_path, monkeypatch):
    beijing = Path(__file__).parent / "fixtures" / "beijing_pm25_head.csv"
    flags = ["--data", str(beijing), "--target", "TEMP", "--calendar", "--lookback", "24", "--split", "0.5,0.25,0.25",
             "--base", "ar,last", "--ar-features", "auto", "--input-lasso", "20", "--model", "encdec", "--layers", "2",
             "--cell", "lstm", "--hidden", "6", "--batch", "16", "--lr", "0.02", "--epochs", "4", "--schedule",
             "cosine", "--seed", "3"]
    assert main(["forecast", "train", *flags, "--out", str(tmp_path / "reference")]) == 0
    ctrl_c_at(monkeypatch, 7)
    assert main(["forecast", "train", *flags, "--out", str(tmp_path / "run")]) == 130
    monkeypatch.undo()
    assert main(["forecast", "train", "--resume", str(tmp_path / "run")]) == 0
    assert_same_run(tmp_path / "reference", tmp_path / "run")
    weights = load_checkpoint(tmp_path / "run", "best")[0]
    inputs = [weights[k] for k in weights if k.endswith("encoder.weight_ih_l0")]
    assert len(inputs) == 2 and all(w[:, 0].any() and not w[:, 1:].any() for w in inputs)  # a strong lasso:
                                                                                            # the target alone


def test_an_epoch_stopped_after_the_time_budget_is_still_finished(tmp_path, monkeypatch):
    flags = [*FLAGS, "--minutes", "1e-6"]                       # spent in the first batch; checked at epochs' ends
    assert main(["forecast", "train", *flags, "--out", str(tmp_path / "reference")]) == 0
    assert len(records(tmp_path / "reference")) == 2            # one epoch, then the test scores
    ctrl_c_at(monkeypatch, 3)
    assert main(["forecast", "train", *flags, "--out", str(tmp_path / "run")]) == 130
    monkeypatch.undo()
    assert main(["forecast", "train", "--resume", str(tmp_path / "run")]) == 0
    assert_same_run(tmp_path / "reference", tmp_path / "run")


def test_a_crash_then_a_stop_while_reporting_resume_to_the_same_run(reference, tmp_path, monkeypatch, capsys):
    run, after_eval = tmp_path / "run", forecast.ForecastTask.after_eval

    def crash_at_epoch_5(self, step, val_loss):  # before the fifth epoch's checkpoint is saved
        if step == 30:
            raise RuntimeError("power cut")
        after_eval(self, step, val_loss)

    monkeypatch.setattr(forecast.ForecastTask, "after_eval", crash_at_epoch_5)
    with pytest.raises(RuntimeError):
        main(["forecast", "train", *FLAGS, "--out", str(run)])
    assert load_checkpoint(run)[1]["epoch"] == 4
    monkeypatch.setattr(forecast.ForecastTask, "after_eval", after_eval)

    def killed(*args):
        raise RuntimeError("killed")

    def ctrl_c(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(forecast_report, "write_outputs", killed)
    with pytest.raises(RuntimeError, match="killed"):  # trained to the end, stopped while writing the report
        main(["forecast", "train", "--resume", str(run)])
    monkeypatch.setattr(forecast_report, "write_outputs", ctrl_c)
    assert main(["forecast", "train", "--resume", str(run)]) == 130   # and again, by Ctrl-C
    assert f"continue with `unrolled forecast train --resume {run}`" in capsys.readouterr().err
    assert "test_mae" not in records(run)[-1]
    monkeypatch.undo()
    assert main(["forecast", "train", "--resume", str(run)]) == 0  # evaluates and reports, trains no more
    assert_same_run(reference, run)


def test_resume_refuses_a_finished_run_a_changed_file_and_extra_flags(reference, tmp_path, capsys):
    assert main(["forecast", "train", "--resume", str(reference)]) == 2
    assert "has finished (its test scores end metrics.jsonl); start a new run" in capsys.readouterr().err
    data = tmp_path / "airline.csv"
    data.write_text(AIRLINE.read_text())
    run = tmp_path / "run"
    assert main(["forecast", "train", *FLAGS, "--data", str(data), "--epochs", "1", "--out", str(run)]) == 0
    lines = (run / "metrics.jsonl").read_text().splitlines()
    (run / "metrics.jsonl").write_text("\n".join(lines[:-1]) + "\n")   # as if killed before the final record
    data.write_text(AIRLINE.read_text().replace('"1960-12",432', '"1960-12",433'))
    assert main(["forecast", "train", "--resume", str(run)]) == 2
    assert f"the data file {data} has changed since the run in {run} started" in capsys.readouterr().err
    assert main(["forecast", "train", "--resume", str(run), "--epochs", "3"]) == 2
    assert "--resume continues a run with its saved settings, so it takes no other flags, but was given --epochs" \
        in capsys.readouterr().err
    assert main(["forecast", "train", "--target", "Passengers"]) == 2
    assert "a new run needs --data (or --resume DIR to continue a run)." in capsys.readouterr().err
