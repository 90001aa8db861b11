"""`--round`: the model's forecasts rounded to a step, given or the one the target is recorded in."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from unrolled.cli import main
from unrolled.tasks import forecast
from unrolled.tasks.forecast_data import recorded_step
from unrolled.tasks.forecast_evaluate import evaluate_run

BEIJING = Path(__file__).parent / "fixtures" / "beijing_pm25_head.csv"      # TEMP in whole degrees


@pytest.mark.parametrize("values, step", [
    ([-11, -12, 3, 0], 1.0),
    ([20.7, 17.9, 0.1 + 0.2, 1e6], 0.1),        # float noise is not a finer step
    ([0.25, 1.5, 2], 0.01),
    ([1e-6, 3e-6], 1e-6),
    ([10, 20, 30], 1.0),                         # at most 1: tens are whole numbers
    ([1 / 3, 1], None),
    ([1e-7, 1], None),
    ([6e8 + 0.5, 1e7 + 0.05], 0.01),            # large values: still every digit
    ([10000 / 3, 2], None),
])
def test_recorded_step_is_the_largest_power_of_ten_every_value_is_a_multiple_of(values, step):
    assert recorded_step(np.array(values, dtype=float)) == step


def train(tmp_path, name: str, *flags: str) -> Path:
    out = tmp_path / name
    assert main(["forecast", "train", "--data", str(BEIJING), "--target", "TEMP", "--lookback", "24", "--horizon", "3",
                 "--gap", "2", "--split", "0.6,0.2,0.2", "--hidden", "8", "--epochs", "2", "--base", "ar",
                 "--seed", "3", *flags, "--out", str(out)]) == 0
    return out


def test_rounding_changes_only_the_models_forecasts_and_every_command_applies_it(tmp_path, capsys):
    plain, rounded = train(tmp_path, "plain"), train(tmp_path, "rounded", "--round", "auto")
    err = capsys.readouterr().err
    assert "the model's forecasts are rounded to multiples of 1, the step 'TEMP' is recorded in over the training " \
           "period." in err
    assert "rounded to multiples of 1" in (rounded / "report.md").read_text()
    p, r = evaluate_run(plain, out=tmp_path / "p.csv")[0], evaluate_run(rounded, out=tmp_path / "r.csv")[0]
    np.testing.assert_array_equal(r["forecasts"]["model"], np.round(p["forecasts"]["model"]))
    assert {k: v for k, v in r["scores"].items() if k != "model"} == \
           {k: v for k, v in p["scores"].items() if k != "model"}                # the baselines are not rounded
    final = json.loads((rounded / "metrics.jsonl").read_text().splitlines()[-1])
    assert final["test_mae"] == r["scores"]["model"]["mae"]                        # evaluate scores as training did
    epochs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()[:-1]]
              for run in (plain, rounded)]
    assert [e["val_loss"] for e in epochs[0]] == [e["val_loss"] for e in epochs[1]]   # training is the same
    assert [e["val_mae"] for e in epochs[0]] != [e["val_mae"] for e in epochs[1]]     # its validation MAE rounded
    with open(tmp_path / "r.csv") as f:
        assert all(float(row["model"]).is_integer() for row in csv.DictReader(f))
    forecast_rows = forecast.predict(rounded).read_text().splitlines()[1:]
    assert len(forecast_rows) == 3 and all(float(line.split(",")[2]).is_integer() for line in forecast_rows)


def test_a_given_step(tmp_path):
    run = train(tmp_path, "run", "--round", "2.5")
    model = evaluate_run(run)[0]["forecasts"]["model"]
    np.testing.assert_allclose(model / 2.5, np.round(model / 2.5), atol=1e-9)
    assert json.loads((run / "config.json").read_text())["round"] == 2.5


def test_auto_needs_a_target_recorded_in_steps(tmp_path, capsys):
    path = tmp_path / "thirds.csv"
    path.write_text("y\n" + "".join(f"{v}\n" for v in [0.5, 1 / 3, 1.25, 2, 3, 1, 2, 3, 1, 2]))
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(path), "--target", "y", "--lookback", "2",
                 "--split", "0.6,0.2,0.2", "--round", "auto", "--out", str(out)]) == 2
    assert capsys.readouterr().err == (
        "unrolled: error: --round auto rounds to the step the target is recorded in, but 'y' holds 0.3333333333 in "
        "the training period, on no power of ten down to 1e-06; give the step as --round STEP.\n")
    assert not out.exists()


def test_auto_reads_the_files_own_values_not_those_interpolated_in_its_gaps(tmp_path, capsys):
    path = tmp_path / "tenths.csv"                        # three missing between 20.1 and 20.2: 20.125, 20.15, 20.175
    path.write_text("y\n" + "".join(f"{v}\n" for v in ["20.1", "", "", "", "20.2", "19.7", "20.2", "21.3",
                                                        "20.6", "19.9", "20.0", "20.8"]))
    assert main(["forecast", "train", "--data", str(path), "--target", "y", "--lookback", "2", "--split",
                 "0.6,0.2,0.2", "--epochs", "1", "--round", "auto", "--out", str(tmp_path / "run")]) == 0
    assert "rounded to multiples of 0.1, the step 'y' is recorded in" in capsys.readouterr().err
    (tmp_path / "gaps.csv").write_text("y\n" + "".join(f"{v}\n" for v in ["20.1", "", "20.2"] * 4))
    assert main(["forecast", "train", "--data", str(tmp_path / "gaps.csv"), "--target", "y", "--lookback", "2",
                 "--split", "0.6,0.2,0.2", "--epochs", "1", "--round", "auto", "--out", str(tmp_path / "r2")]) == 0
    assert "rounded to multiples of 0.1" in capsys.readouterr().err      # 20.15 was never in the file


@pytest.mark.parametrize("step", ["1e-320", "1e300"])
def test_a_step_that_cannot_round_the_target_is_refused(tmp_path, capsys, step):
    out = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(BEIJING), "--target", "TEMP", "--round", step,
                 "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--round {float(step):g} is no step to round 'TEMP' to: its values in the training period go from" in err
    assert err.count("\n") == 1 and not out.exists()


def test_a_run_from_before_rounding_forecasts_as_it_always_did(tmp_path, monkeypatch):
    run = train(tmp_path, "run", "--round", "auto")
    rounded = forecast.predict(run, out=tmp_path / "r.csv").read_text()
    load_data = forecast.load_data

    def older(run, config):                               # data.json as runs wrote it before --round
        normaliser, ar, linear_ar, meta = load_data(run, config)
        return normaliser, ar, linear_ar, {k: v for k, v in meta.items() if k != "round_step"}

    monkeypatch.setattr(forecast, "load_data", older)
    unrounded = forecast.predict(run, out=tmp_path / "u.csv").read_text()
    values = [[float(line.split(",")[2]) for line in text.splitlines()[1:]] for text in (rounded, unrounded)]
    assert values[0] == [round(v) for v in values[1]] and values[0] != values[1]


@pytest.mark.parametrize("value", [0, -1, True, "1", float("nan"), float("inf"), 10 ** 400])
def test_config_refuses_a_round_that_is_no_step(value):
    with pytest.raises(ValueError, match="round must be 'auto' or a step above zero"):
        forecast.Config(data="x.csv", target="y", round=value)
