"""`forecast evaluate`: a trained run scored on data against the baselines, nothing fitted again."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from unrolled.cli import main
from unrolled.tasks import forecast, forecast_evaluate
from unrolled.tasks.forecast_data import prepare
from unrolled.tasks.forecast_evaluate import evaluate_run

FIXTURES = Path(__file__).parent / "fixtures"
BEIJING = FIXTURES / "beijing_pm25_head.csv"
AIRLINE = FIXTURES / "airline-passengers.csv"


def test_the_runs_own_file_gives_the_test_scores_of_training(tmp_path):
    config = forecast.Config(data=str(BEIJING), target="TEMP", lookback=24, gap=5, split=(0.5, 0.25, 0.25),
                             hidden=8, epochs=2, base="ar,last", ar_features="auto", calendar=True)
    run, trained = forecast.train(config, tmp_path / "run", log=open(tmp_path / "log", "w"), progress=False)
    results, text = evaluate_run(run)
    assert results["scores"] == trained["scores"]                     # every forecast, bit for bit
    np.testing.assert_array_equal(results["origins"], prepare(config).test)
    final = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert results["scores"]["baseline_linear_ar"]["mae"] == final["baseline_linear_ar_mae"]  # every column's AR,
    assert "ar/columns" in np.load(run / "data.npz")                  # not the one the ar members correct
    assert text.startswith(f"TEMP in {BEIJING.name}, the run's test period: {len(results['origins'])} windows")
    assert "| **model** |" in text


def test_newer_data_is_scored_from_since_as_predict_forecast_it(tmp_path):
    lines = AIRLINE.read_text().splitlines()
    older = tmp_path / "to-1958.csv"
    older.write_text("\n".join(lines[:121]) + "\n")                  # up to 1958-12
    config = forecast.Config(data=str(older), target="Passengers", test_last=24, val_last=12, lookback=12,
                             horizon=2, hidden=8, epochs=2, base="ar", seed=5)
    run, _ = forecast.train(config, tmp_path / "run", log=open(tmp_path / "log", "w"), progress=False)
    out = tmp_path / "scores" / "every-window.csv"
    results, text = evaluate_run(run, data=AIRLINE, since="1959-01", out=out)
    assert len(results["origins"]) == 23                              # 1959-01 .. 1960-12, two months each
    assert text.startswith(f"Passengers in {AIRLINE.name}, the windows from 1959-01: 23 windows, forecasts "
                           "for 1959-01 to 1960-12.")
    rows = [line.split(",") for line in out.read_text().splitlines()]
    assert rows[0] == ["time", "step", "Passengers", "model", "persistence", "seasonal_naive", "moving_average",
                       "linear_ar"]
    assert [r[:3] for r in rows[1:3]] == [["1959-01", "1", "360"], ["1959-02", "2", "342"]]
    assert [r[4] for r in rows[1:3]] == ["337", "337"]               # persistence: 1958-12
    assert len(rows) == 1 + 23 * 2 and rows[-1][:2] == ["1960-12", "2"]
    predicted = forecast.predict(run, out=tmp_path / "f.csv").read_text().splitlines()
    assert [line.split(",")[2] for line in predicted[1:]] == [rows[1][3], rows[2][3]]   # the same two forecasts
    truth = np.array([float(r[2]) for r in rows[1:]])
    model = np.array([float(r[3]) for r in rows[1:]])
    assert results["scores"]["model"]["mae"] == pytest.approx(np.abs(truth - model).mean(), rel=1e-5)
    assert np.isfinite(results["scores"]["model"]["mase"])            # scaled as in training


def test_a_series_without_times_is_scored_from_a_row_number(tmp_path, capsys):
    values = [line.split(",")[1] for line in AIRLINE.read_text().splitlines()]
    data = tmp_path / "counts.csv"
    data.write_text("\n".join(values) + "\n")                         # one column, no time
    run = tmp_path / "run"
    assert main(["forecast", "train", "--data", str(data), "--target", "Passengers", "--lookback", "12",
                 "--hidden", "4", "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["forecast", "evaluate", str(run), "--data", str(data), "--since", "100"]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"Passengers in counts.csv, the windows from 100: {144 - 100} windows, forecasts for "
                           "rows 100 to 143.")
    assert main(["forecast", "evaluate", str(run), "--since", "1959-01"]) == 2
    assert "--since must be a row number (from 0), as the data has no time column, but was given '1959-01'." \
        in capsys.readouterr().err


@pytest.fixture(scope="module")
def monthly(tmp_path_factory):
    """A tiny run on a copy of the airline series whose target is named 'Passengers, k'."""
    folder = tmp_path_factory.mktemp("monthly")
    data = folder / "airline.csv"
    data.write_text(AIRLINE.read_text().replace("Passengers", "Passengers, k", 1))   # a quoted name
    config = forecast.Config(data=str(data), target="Passengers, k", lookback=12, hidden=4, epochs=1, gap=1)
    run, _ = forecast.train(config, folder / "run", log=open(folder / "log", "w"), progress=False)
    return run, data


def test_since_between_rows_starts_at_the_next_row_and_the_csv_quotes_names(monthly, tmp_path):
    run, data = monthly
    out = tmp_path / "f.csv"
    results, text = evaluate_run(run, since="1959-01-15", out=out)
    assert "forecasts for 1959-02 to 1960-12" in text                # 1959-01 is before the 15th
    rows = list(csv.reader(out.open()))
    assert rows[0][:3] == ["time", "step", "Passengers, k"] and rows[1][:2] == ["1959-02", "2"]
    assert {len(r) for r in rows} == {len(rows[0])}


@pytest.mark.parametrize("since", ["", "2014-01-01T00:00Z", "soon", "0", "-1", "19600115"])
def test_a_since_that_is_not_a_plain_time_is_refused(monthly, since):
    with pytest.raises(ValueError, match=r"--since must be a time such as 1949-01, without a time zone"):
        evaluate_run(monthly[0], since=since)


def test_the_test_period_of_a_changed_file_is_not_guessed(monthly, tmp_path):
    run, data = monthly
    changed = tmp_path / "run"
    shutil.copytree(run, changed)
    config = json.loads((changed / "config.json").read_text())
    moved = tmp_path / "airline.csv"
    moved.write_text(data.read_text().rstrip() + "\n1961-01,450\n")     # a month more
    (changed / "config.json").write_text(json.dumps({**config, "data": str(moved)}))
    with pytest.raises(ValueError, match="airline.csv has changed since the run in .* trained on it, so its test "
                                         "period is no longer known; give --since"):
        evaluate_run(changed)
    assert "forecasts for 1960-02 to 1961-01" in evaluate_run(changed, since="1960-02")[1]


def test_out_never_lands_inside_a_run(monthly):
    run, _ = monthly
    before = (run / "plots" / "forecast.png").read_bytes()
    with pytest.raises(ValueError, match="is in the run folder"):
        evaluate_run(run, out=run / "plots" / "forecast.png")
    assert (run / "plots" / "forecast.png").read_bytes() == before


def test_a_run_from_before_mase_scales_were_saved_says_what_is_left_out(monthly, monkeypatch):
    run, _ = monthly
    load_data = forecast_evaluate.load_data

    def older(run, config):                                            # as a run of an earlier version
        normaliser, ar, _, meta = load_data(run, config)
        return normaliser, ar, None, {k: v for k, v in meta.items() if k != "mase_scale"}
    monkeypatch.setattr(forecast_evaluate, "load_data", older)
    results, text = evaluate_run(run, since="1959-01")
    assert "baseline_linear_ar" not in results["scores"] and np.isnan(results["scores"]["model"]["mase"])
    assert "| - |" in text and "MASE is left out" in text and "The linear AR baseline is left out" in text
    own, text = evaluate_run(run)                                      # its test period: the scale of training
    assert own["scores"]["model"]["mase"] == pytest.approx(
        json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["test_mase"], rel=1e-12)
