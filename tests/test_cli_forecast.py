"""`unrolled forecast train | predict` end to end on small fixtures, and its one-sentence errors."""
import json
from pathlib import Path

import pytest

from unrolled.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
BEIJING = FIXTURES / "beijing_pm25_head.csv"
AIRLINE = FIXTURES / "airline-passengers.csv"


def test_train_and_predict_smoke(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["forecast", "train", "--data", str(BEIJING), "--target", "TEMP", "--lookback", "24", "--horizon", "6",
                 "--split", "0.6,0.2,0.2", "--hidden", "8", "--batch", "32", "--lr", "0.01", "--epochs", "8",
                 "--patience", "8", "--stride", "2", "--seed", "1", "--out", str(out)])
    assert code == 0
    captured = capsys.readouterr()
    assert "test MAE" in captured.out and "interpolated 24 missing values" in captured.err
    assert "epoch 8: train" in captured.err and "24/24 steps" in captured.err  # epoch lines above the bar
    for name in ("config.json", "metrics.jsonl", "best.npz", "data.npz", "report.md",
                 "plots/forecast.png", "plots/error-by-horizon.png", "plots/loss.png"):
        assert (out / name).exists(), name
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["train_loss"] for r in records[:-1]]
    assert len(losses) == 8 and losses[-1] < 0.7 * losses[0]              # the loss falls
    assert all(r["val_mae"] > 0 for r in records[:-1])                    # validation MAE in degrees
    final = records[-1]
    assert {"test_mae", "test_rmse"} <= set(final)
    for name in ("persistence", "seasonal_naive", "moving_average", "linear_ar"):
        assert {f"baseline_{name}_mae", f"baseline_{name}_rmse"} <= set(final)
    assert json.loads((out / "config.json").read_text())["target"] == "TEMP"

    assert main(["forecast", "predict", str(out), "--out", str(tmp_path / "f.csv")]) == 0
    lines = (tmp_path / "f.csv").read_text().splitlines()
    assert lines[0] == "step,time,TEMP" and len(lines) == 7
    assert lines[1].startswith("1,2010-01-15T00:00,")                    # the hour after the file's last


def exit_code(argv) -> int:
    """main's return value, or the code of the SystemExit argparse raises for a bad flag."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def bad(tmp_path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("args, message", [
    (["--data", str(AIRLINE), "--target", "Cars"],
     "column 'Cars' is not in airline-passengers.csv, whose columns are Month, Passengers."),
    (["--data", str(AIRLINE), "--target", "Passengers", "--lookback", "150"],
     "the series has 144 rows, too short for a lookback of 150 plus 1 step ahead (at least 151 rows)."),
    (["--data", str(AIRLINE), "--target", "Month"], "the target must not be a time column, but was given 'Month'."),
    (["--data", str(BEIJING), "--target", "cbwd"], "target column 'cbwd' must hold numbers, but holds 'NW'."),
    (["--data", "MISSING", "--target", "y"], "expected a CSV file at MISSING, but there is no such file."),
    (["--data", "EMPTY", "--target", "y"], "it is empty."),
    (["--data", str(AIRLINE), "--target", "Passengers", "--split", "0.5,0.5"], "three positive fractions"),
    (["--data", str(AIRLINE), "--target", "Passengers", "--base", "ar,ar"], "a comma-separated list of distinct"),
    (["--data", str(AIRLINE), "--target", "Passengers", "--members", "0"], "--members: must be a positive integer"),
    (["--data", str(AIRLINE), "--target", "Passengers", "--round", "0"], "--round: must be auto or a step above zero"),
])
def test_bad_input_is_one_sentence_and_exit_code_2(tmp_path, capsys, args, message):
    empty = bad(tmp_path, "empty.csv", "")
    args = [str(tmp_path / "missing.csv") if a == "MISSING" else str(empty) if a == "EMPTY" else a for a in args]
    message = message.replace("MISSING", str(tmp_path / "missing.csv"))
    out = tmp_path / "run"
    assert exit_code(["forecast", "train", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()                                                   # nothing half-made


def test_non_numeric_target_in_a_csv_of_numbers_and_labels(tmp_path, capsys):
    path = bad(tmp_path, "mixed.csv", "day,sales\n2020-01-01,3\n2020-01-02,n/a\n2020-01-03,lots\n")
    assert exit_code(["forecast", "train", "--data", str(path), "--target", "sales", "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err == "unrolled: error: target column 'sales' must hold numbers, but holds 'lots'.\n"


def test_predict_on_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert exit_code(["forecast", "predict", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and err.count("\n") == 1
