"""Bad forecasting input found by probing: one sentence naming the flag, row or value, exit code 2, no run folder."""
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from unrolled.cli import main
from unrolled.data.series import load_series
from unrolled.tasks import forecast, forecast_report

FIXTURES = Path(__file__).parent / "fixtures"
AIRLINE = FIXTURES / "airline-passengers.csv"
TINY = ["--target", "Passengers", "--lookback", "12", "--hidden", "4", "--epochs", "1"]


def airline_with(tmp_path, row: int, cells: str, name: str = "data.csv") -> Path:
    """A copy of the airline CSV whose data row `row` (1-based) is `cells`."""
    lines = AIRLINE.read_text().splitlines()
    lines[row] = cells
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def refused(capsys, args: list[str]) -> str:
    """The one-line error of a command that must exit with code 2 (argparse's SystemExit for a bad flag)."""
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("unrolled") and err.count("\n") == 1 and "Traceback" not in err
    return err


def train_refused(tmp_path, capsys, args: list[str]) -> str:
    out = tmp_path / "run"
    err = refused(capsys, ["forecast", "train", *args, "--out", str(out)])
    assert not out.exists()                                                  # refused before the run folder
    return err


# ----- 1. a constant target --------------------------------------------------------------------------

def test_a_constant_target_is_refused_before_the_run_folder(tmp_path, capsys):
    path = tmp_path / "const.csv"
    path.write_text("Month,Passengers\n" + "".join(f"{1950 + m // 12}-{m % 12 + 1:02d},100\n" for m in range(48)))
    err = train_refused(tmp_path, capsys, ["--data", str(path), *TINY])
    assert "the target column 'Passengers' of const.csv does not change over the 34 rows of the training period" in err


def test_the_report_survives_a_baseline_with_no_error():
    config = forecast.Config(data="flat.csv", target="y")
    data = SimpleNamespace(series=SimpleNamespace(target="y", columns=["y"], report=[]),
                           split=SimpleNamespace(sizes=(70, 15, 15)), train=range(46), val=range(15), test=range(15),
                           season=12, ar_choice=None, round_step=None)
    score = lambda mae: {"mae": mae, "rmse": mae, "smape": mae, "mase": mae}
    results = {"scores": {"model": score(0.5), "baseline_persistence": score(0.0)}, "mase_scale": 1.0}
    final = {"epoch": 1, "step": 2, "elapsed_s": 0.1, "best_val_loss": 0.2}
    text = forecast_report.report(config, data, results, final, "persistence")
    assert "The best baseline (persistence) is exact on the test period; the model's MAE is 0.5." in text


# ----- 3. a time column with a cell that is not a time -------------------------------------------------

@pytest.mark.parametrize("cells, message", [
    ('"notadate",135', "time column 'Month' must hold ISO dates such as 1981-01-31 or 2010-01-01 13:00, "
                       "but data row 5 holds 'notadate'."),
    (",135", "time column 'Month' must hold a time in every row, but data row 5 holds ''."),
])
def test_a_bad_cell_in_a_first_column_of_dates_names_its_row(tmp_path, capsys, cells, message):
    path = airline_with(tmp_path, 5, cells)
    with pytest.raises(ValueError, match="data row 5"):
        load_series(path, "Passengers")
    assert message in train_refused(tmp_path, capsys, ["--data", str(path), *TINY])


def test_a_row_counter_is_not_a_time_column(tmp_path, capsys):
    path = tmp_path / "counted.csv"
    path.write_text("No,Passengers\n" + "".join(f"{i},{100 + i % 7}\n" for i in range(1, 60)))
    err = train_refused(tmp_path, capsys, ["--data", str(path), "--time-col", "No", *TINY])
    assert ("time column 'No' must hold dates such as 1981-01-31, 2010-01-01 13:00 or a 4-digit year, but data "
            "row 1 holds '1'.") in err
    years = tmp_path / "years.csv"                                     # a column of 4-digit years is one
    years.write_text("Year,Passengers\n" + "".join(f"{1900 + i},{100 + i % 7}\n" for i in range(60)))
    assert str(load_series(years, "Passengers", time_col="Year").time[0]) == "1900"


def test_a_bad_cell_in_an_hour_column_names_its_row(tmp_path):
    path = tmp_path / "hours.csv"
    path.write_text("year,month,day,hour,y\n" + "".join(f"2010,1,1,{h},{h}\n" for h in range(5)) + "2010,1,1,NA,5\n")
    with pytest.raises(ValueError, match=re.escape("time column 'hour' must hold whole numbers in every row, "
                                                   "but data row 6 holds 'NA'.")):
        load_series(path, "y")


# ----- 4. --split values that are not fractions ------------------------------------------------------

@pytest.mark.parametrize("split", ["nan,0.5,0.5", "0.5,nan,0.5", "-0.1,0.6,0.5"])
def test_split_values_that_are_not_fractions_name_the_flag(tmp_path, capsys, split):
    err = train_refused(tmp_path, capsys, ["--data", str(AIRLINE), *TINY, f"--split={split}"])
    assert f"argument --split: must be three positive fractions adding up to 1, such as 0.5,0.25,0.25, " \
           f"but was given '{split}'" in err


def test_a_negative_seed_names_the_flag(tmp_path, capsys):
    assert "argument --seed: must be an integer >= 0, but was given '-3'" in \
        train_refused(tmp_path, capsys, ["--data", str(AIRLINE), *TINY, "--seed", "-3"])


# ----- 5. numbers that are not finite -------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "1e400"])
def test_an_infinite_target_value_names_its_row_and_value(tmp_path, capsys, value):
    path = airline_with(tmp_path, 7, f'"1949-07",{value}')
    message = f"target column 'Passengers' must hold finite numbers, but data row 7 holds '{value}'."
    assert message in train_refused(tmp_path, capsys, ["--data", str(path), *TINY])


def test_an_infinite_feature_value_names_its_row_and_value(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("Month,Passengers,Cargo\n" + "".join(f"1950-{m:02d},{100 + m},{m}\n" for m in range(1, 10)) +
                    "1950-10,110,inf\n")
    with pytest.raises(ValueError, match=re.escape("column 'Cargo' must hold finite numbers, but data row 10 "
                                                   "holds 'inf'.")):
        load_series(path, "Passengers")


# ----- 6. predict --out --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast") / "run"
    assert main(["forecast", "train", "--data", str(AIRLINE), *TINY, "--out", str(out)]) == 0
    return out


def test_predict_out_that_is_a_folder_is_refused(run, tmp_path, capsys):
    folder = tmp_path / "adir"
    folder.mkdir()
    for out in (str(folder), str(folder) + "/", str(tmp_path / "newdir") + "/"):
        err = refused(capsys, ["forecast", "predict", str(run), "--out", out])
        assert f"--out must name a file to write the forecast to, but {out} names a folder." in err
    assert list(folder.iterdir()) == [] and not (tmp_path / "newdir").exists()


def test_predict_out_in_a_missing_folder_makes_it(run, tmp_path, capsys):
    out = tmp_path / "new" / "deeper" / "f.csv"
    assert main(["forecast", "predict", str(run), "--out", str(out)]) == 0
    assert out.read_text().startswith("step,time,Passengers\n1,1961-01,")


def test_predict_out_below_a_file_or_onto_the_data_is_refused(run, tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_bytes(AIRLINE.read_bytes())
    err = refused(capsys, ["forecast", "predict", str(run), "--out", str(data / "f.csv")])
    assert f"{data}: it, or a folder above it, is a file where a folder is needed." in err
    err = refused(capsys, ["forecast", "predict", str(run), "--data", str(data), "--out", str(data)])
    assert f"--out {data} is a data file of this run" in err
    err = refused(capsys, ["forecast", "predict", str(run), "--data", str(data), "--out", str(AIRLINE)])
    assert f"--out {AIRLINE} is a data file of this run" in err               # the one it was trained on
    assert data.read_bytes() == AIRLINE.read_bytes()                          # the user's file is untouched


def test_predict_out_never_replaces_a_file_of_the_run(run, capsys):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for name in ("config.json", "best.npz", "metrics.jsonl", "report.md"):
        err = refused(capsys, ["forecast", "predict", str(run), "--out", str(run / name)])
        assert f"is in the run folder {run}, whose own files it could replace" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert main(["forecast", "predict", str(run), "--out", str(run / "forecast.csv")]) == 0


def test_predict_out_may_go_to_a_folder_with_a_config_json_of_its_own(run, tmp_path):
    (tmp_path / "config.json").write_text('{"tool": "another"}')            # not a run folder
    assert main(["forecast", "predict", str(run), "--out", str(tmp_path / "pred.csv")]) == 0
    assert (tmp_path / "pred.csv").is_file()
