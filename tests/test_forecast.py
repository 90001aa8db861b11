"""Forecasters (gradient checks) and the forecasting pipeline: data isolation, framing, training, predict."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from unrolled.forecasting.model import EncoderDecoderForecaster, Forecaster
from unrolled.tasks import forecast
from unrolled.tasks.forecast_data import aligned, prepare
from unrolled.testing import gradcheck

FIXTURES = Path(__file__).parent / "fixtures"
BEIJING = FIXTURES / "beijing_pm25_head.csv"
AIRLINE = FIXTURES / "airline-passengers.csv"


# ----- the models' backward passes -----------------------------------------------------------------

@pytest.mark.parametrize("model", [Forecaster, EncoderDecoderForecaster])
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_forecasters_gradcheck(model, cell):
    rng = np.random.default_rng(3)
    m = model(input_size=2, horizon=3, hidden_size=3, num_layers=2, cell=cell, seed=1).double()
    for p in m.parameters():
        p.data[...] = rng.standard_normal(p.shape) * 0.5              # non-zero biases too
    x = rng.standard_normal((4, 2, 2))                                # (L, B, F)
    errors = gradcheck(m, (x,))
    assert max(errors.values()) < 1e-6
    assert m.head.weight.grad.any() and m.encoder.weight_ih_l0.grad.any()


def test_forecaster_shapes_dropout_and_names():
    m = Forecaster(input_size=5, horizon=4, hidden_size=6, num_layers=2, cell="lstm", dropout=0.5, seed=0)
    x = np.random.default_rng(0).standard_normal((7, 3, 5)).astype(np.float32)
    y1, y2 = m(x), m(x)
    assert y1.shape == (3, 4) and y1.dtype == np.float32
    assert not np.array_equal(y1, y2)                                 # dropout is on while training
    m.clear_cache()
    m.eval()
    np.testing.assert_array_equal(m(x), m(x))
    assert "encoder.weight_hh_l1" in dict(m.named_parameters())
    e = EncoderDecoderForecaster(input_size=5, horizon=9, hidden_size=6, cell="gru", seed=0).eval()
    assert e(x).shape == (3, 9) and e.head.weight.shape == (1, 6)     # one shared output layer for every step
    with pytest.raises(ValueError, match="cell must be one of rnn, lstm, gru"):
        Forecaster(5, 1, cell="tcn")


# ----- data: the test period stays unseen ----------------------------------------------------------

def test_normalisation_windows_and_baselines_never_see_the_test_period():
    config = forecast.Config(data=str(BEIJING), target="TEMP", lookback=24, horizon=6, split=(0.5, 0.25, 0.25))
    data = prepare(config)
    series = forecast.load(config)
    series.values[data.split.val_end:] = 1e4                          # every column of the test period
    again = prepare(config, series)
    np.testing.assert_array_equal(data.normaliser.mean, again.normaliser.mean)
    np.testing.assert_array_equal(data.normaliser.std, again.normaliser.std)
    for part in ("train", "val"):
        origins = getattr(data, part)
        np.testing.assert_array_equal(origins, getattr(again, part))
        np.testing.assert_array_equal(data.windows.inputs(origins), again.windows.inputs(origins))
        np.testing.assert_array_equal(data.windows.targets(origins), again.windows.targets(origins))
    assert data.windows.target_rows(data.train).max() < data.split.train_end
    assert data.train.max() < data.split.train_end                    # inputs end inside training too
    assert data.windows.target_rows(data.test).min() == data.split.val_end
    b1 = forecast.baseline_forecasts(data, data.val)
    b2 = forecast.baseline_forecasts(again, again.val)
    for name in b1:                                                   # the AR is fitted on training windows only
        np.testing.assert_array_equal(b1[name], b2[name])


@pytest.mark.parametrize("base", ["none", "last", "ar"])
def test_framing_round_trip(base):
    config = forecast.Config(data=str(AIRLINE), target="Passengers", lookback=12, horizon=3, test_last=24,
                             log=True, base=base)
    data = prepare(config)
    origins = data.test
    x, level = data.inputs(origins)
    y = data.targets(origins, level)
    truth = data.series.target_values[data.windows.target_rows(origins)]
    np.testing.assert_allclose(data.original_units(y + level), truth, rtol=1e-12)
    if base == "last":
        assert np.all(x[-1, :, 0] == 0)                              # relative to the window's last value
        np.testing.assert_array_equal(level, np.repeat(data.windows.inputs(origins)[-1, :, :1], 3, axis=1))
    if base == "ar":
        np.testing.assert_array_equal(level, data.ar.predict(data.windows, origins))
        np.testing.assert_array_equal(x, data.windows.inputs(origins))
    with pytest.raises(ValueError, match="--log needs a target above zero"):
        data.series.values[5, 0] = -1
        prepare(config, data.series)


@pytest.mark.parametrize("overrides, message", [
    (dict(lookback=200), "the series has 144 rows, too short for a lookback of 200 plus 1 step ahead"),
    (dict(lookback=100), "the training period has 99 rows, too short for a lookback of 100"),
    (dict(horizon=22), "the validation period has 21 rows, fewer than the 22 steps ahead"),
    (dict(horizon=20, gap=5, val_last=40), "the test period has 24 rows, fewer than the 25 steps ahead"),
])
def test_too_short_series(overrides, message):
    config = forecast.Config(data=str(AIRLINE), target="Passengers", test_last=24, **overrides)
    with pytest.raises(ValueError, match=message):
        prepare(config)


# ----- training, evaluation and predict ------------------------------------------------------------

SMALL = dict(data=str(AIRLINE), target="Passengers", test_last=24, val_last=12, lookback=12, horizon=2,
             hidden=8, batch=16, lr=5e-3, epochs=6, patience=3, log=True, base="last", seed=5)


def test_training_is_reproducible_restores_the_best_weights_and_compares_baselines(tmp_path):
    log = open(tmp_path / "log.txt", "w")
    run1, res1 = forecast.train(forecast.Config(**SMALL), tmp_path / "a", log=log)
    run2, res2 = forecast.train(forecast.Config(**SMALL), tmp_path / "b", log=log)
    assert res1["scores"] == res2["scores"]                          # same seed, same numbers
    records = [json.loads(line) for line in (run1 / "metrics.jsonl").read_text().splitlines()]
    epochs, final = records[:-1], records[-1]
    config, model, _, _, _ = forecast.load_run(run1)
    data = prepare(config)
    task = forecast.ForecastTask(model, data, config)
    assert task.evaluate() == pytest.approx(min(r["val_loss"] for r in epochs), rel=1e-6)  # best weights back
    assert final["test_mae"] == res1["scores"]["model"]["mae"]
    names = {"persistence", "seasonal_naive", "moving_average", "linear_ar"}
    assert {f"baseline_{n}_{m}" for n in names for m in ("mae", "rmse")} <= set(final)
    truth = res1["truth"]                                             # every forecast on the same test windows
    assert all(p.shape == truth.shape == (len(data.test), 2) for p in res1["forecasts"].values())
    np.testing.assert_array_equal(res1["forecasts"]["baseline_persistence"][:, 0],
                                  data.series.target_values[data.test])
    assert truth[-1, -1] == 432.0                                     # the last month of the file, 1960-12
    for name in ("forecast.png", "error-by-horizon.png", "loss.png"):
        assert (run1 / "plots" / name).stat().st_size > 1000
    assert "| **model** |" in (run1 / "report.md").read_text()


def test_predict_writes_the_steps_after_the_data(tmp_path):
    config = forecast.Config(**{**SMALL, "epochs": 3, "schedule": "cosine", "calendar": True, "base": "ar",
                                "model": "encdec", "cell": "lstm"})
    run, _ = forecast.train(config, tmp_path / "run", log=open(tmp_path / "log", "w"))
    lrs = [json.loads(line).get("lr") for line in (run / "metrics.jsonl").read_text().splitlines()[:-1]]
    assert lrs[0] > lrs[1] > lrs[2] == pytest.approx(SMALL["lr"] / 100)    # the cosine ends at 1% of the lr
    _, _, _, ar, _ = forecast.load_run(run)
    np.testing.assert_array_equal(ar.coef, prepare(config).ar.coef)      # the base forecast predict adds
    path = forecast.predict(run)
    lines = path.read_text().splitlines()
    assert path == run / "forecast.csv" and lines[0] == "step,time,Passengers"
    assert [line.split(",")[:2] for line in lines[1:]] == [["1", "1961-01"], ["2", "1961-02"]]
    assert 300 < float(lines[1].split(",")[2]) < 700
    shorter = tmp_path / "short.csv"
    shorter.write_text("\n".join(AIRLINE.read_text().splitlines()[:121]))  # up to 1958-12
    lines = forecast.predict(run, data=shorter, out=tmp_path / "f.csv").read_text().splitlines()
    assert lines[1].startswith("1,1959-01,")
    with pytest.raises(ValueError, match="column 'Passengers' is not in"):
        other = tmp_path / "other.csv"
        other.write_text("Month,Cars\n1949-01,3\n")
        forecast.predict(run, data=other)


@pytest.mark.parametrize("members, described", [(1, "one such model"), (2, "2 such models")])
def test_an_ensemble_of_bases_averages_its_members_forecasts(tmp_path, members, described):
    log = open(tmp_path / "log", "w")
    config = forecast.Config(**{**SMALL, "base": "ar,last", "members": members, "epochs": 3, "patience": 5})
    run, res = forecast.train(config, tmp_path / "ens", log=log)
    _, model, _, _, _ = forecast.load_run(run)
    assert len(model.members) == 2 * members
    data = prepare(config)
    ar, last = data.members()
    assert (ar.base, last.base) == ("ar", "last")
    with pytest.raises(ValueError, match="use members"):
        data.inputs(data.test)
    means = []                                                        # the forecast: the mean of the members'
    for member, framing in zip(model.members, (ar, last) * members):
        x, base = framing.inputs(data.test)
        means.append(member(x.astype(np.float32)) + base)
    np.testing.assert_allclose(data.original_units(np.mean(means, axis=0)), res["forecasts"]["model"], rtol=1e-5)
    assert members == 1 or not np.allclose(means[0], means[2])        # the same base, another seed
    lines = forecast.predict(run).read_text().splitlines()             # predict reads every member too
    assert len(lines) == 3 and 300 < float(lines[1].split(",")[2]) < 700
    names = [name for name, _ in model.named_parameters()]
    assert "members.0.encoder.weight_ih_l0" in names and f"members.{2 * members - 1}.head.weight" in names
    assert f"an ensemble of {described} per base (ar,last), forecasts averaged" in (run / "report.md").read_text()


def test_each_member_clips_its_own_gradients():
    config = forecast.Config(**{**SMALL, "base": "ar,last", "members": 2, "clip": 1e-3})
    data = prepare(config)
    model = forecast.build(config, len(data.series.columns))
    task = forecast.ForecastTask(model, data, config)
    task.start_epoch(0)
    task.train_batch(0, 0)
    norms = [np.sqrt(sum(float((p.grad ** 2).sum()) for p in m.parameters())) for m in model.members]
    np.testing.assert_allclose(norms, 1e-3, rtol=1e-4)                # each at the bound, not the total


def test_ar_features_give_the_ar_base_fewer_columns_and_leave_the_baseline_whole(tmp_path):
    common = dict(data=str(BEIJING), target="TEMP", calendar=True, lookback=24, gap=5, split=(0.5, 0.25, 0.25),
                  hidden=8, epochs=1, base="ar,last")
    whole = prepare(forecast.Config(**common))
    named = prepare(forecast.Config(**common, ar_features=["PRES", "cbwd"]))
    columns = [named.series.columns[j] for j in named.ar.columns]
    assert columns == ["TEMP", "PRES", "cbwd=NE", "cbwd=NW", "cbwd=SE", "cbwd=cv", "day_sin", "day_cos",
                       "year_sin", "year_cos"]
    assert "reads only PRES, cbwd besides the target and the calendar" in named.ar_choice
    alone = prepare(forecast.Config(**common, ar_features=[]))
    assert [alone.series.columns[j] for j in alone.ar.columns] == ["TEMP", *columns[-4:]]
    assert "reads only the target and the calendar, as" in alone.ar_choice
    for data in (named, prepare(forecast.Config(**common, ar_features="auto"))):
        assert data.linear_ar.columns is None                        # the baseline reads every column
        np.testing.assert_array_equal(forecast.baseline_forecasts(data, data.test)["linear_ar"],
                                      forecast.baseline_forecasts(whole, whole.test)["linear_ar"])
    config = forecast.Config(**common, ar_features="auto")
    run, _ = forecast.train(config, tmp_path / "run", log=open(tmp_path / "log", "w"))
    data = prepare(config)
    assert "leaves out pm2.5" in data.ar_choice and data.ar_choice in (run / "report.md").read_text()
    assert len(data.ar.columns) < len(data.series.columns)
    _, _, _, ar, _ = forecast.load_run(run)                           # predict corrects the same AR
    np.testing.assert_array_equal(ar.columns, data.ar.columns)
    np.testing.assert_array_equal(ar.predict(data.windows, data.test), data.ar.predict(data.windows, data.test))
    assert len(forecast.predict(run).read_text().splitlines()) == 2


@pytest.mark.parametrize("overrides, message", [
    (dict(base="ar,ar"), "base must be one of none, last, ar or a comma-separated list of distinct ones"),
    (dict(base="last", ar_features="auto"), "an 'ar' base corrects, but the base is 'last'"),
    (dict(base="ar", ar_features="PRES"), "must be 'auto' or a list of column names"),
    (dict(base="ar", ar_features=5), "must be 'auto' or a list of column names"),
    (dict(input_lasso=-1.0), "input_lasso must be a number >= 0, but was given -1.0"),
    (dict(base="ar", ar_features=["wind"]), "--ar-features names 'wind', but the inputs besides the target are "
                                            "pm2.5, DEWP, PRES, cbwd, Iws, Is, Ir"),
])
def test_config_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        prepare(forecast.Config(data=str(BEIJING), target="TEMP", lookback=24, **overrides))


def test_ar_features_auto_with_a_log_target_reports_the_mae_of_the_log():
    config = forecast.Config(data=str(BEIJING), target="PRES", lookback=24, split=(0.5, 0.25, 0.25), base="ar",
                             ar_features="auto", log=True)
    data = prepare(config)
    said = float(data.ar_choice.split("its MAE of the log there ")[1].split(" ")[0])
    truth = data.normaliser.inverse_target(data.windows.targets(data.val))        # log(PRES)
    every = data.normaliser.inverse_target(data.linear_ar.predict(data.windows, data.val))
    assert said == pytest.approx(np.abs(every - truth).mean(), rel=1e-3)
    assert not data.series.values[:, data.series.columns.index("Ir")].any()      # no rain in these two weeks:
    assert "Ir" not in data.ar_choice.split(", by backward")[0]                   # rounding never removes it


def test_a_resumed_run_corrects_the_ar_it_chose_at_the_start(tmp_path, monkeypatch):
    config = forecast.Config(data=str(BEIJING), target="TEMP", lookback=24, gap=5, split=(0.5, 0.25, 0.25),
                             hidden=8, epochs=2, base="ar", ar_features="auto")
    log = open(tmp_path / "log", "w")
    with monkeypatch.context() as patch:                     # stopped after its first epoch
        patch.setattr(forecast, "fit_with_early_stopping", lambda *args: (None, True))
        run, results = forecast.train(config, tmp_path / "run", log=log)
    assert results is None
    chosen = forecast.load_data(run, config)[1]

    def never(*args):
        raise AssertionError("the columns were chosen again")
    monkeypatch.setattr("unrolled.tasks.forecast_data.select_columns", never)
    _, results = forecast.train(resume_from=run, log=log)
    assert results is not None
    ar, meta = forecast.load_run(run)[3:]
    np.testing.assert_array_equal(ar.columns, chosen.columns)
    assert meta["ar_choice"].startswith("the linear AR that the 'ar' base corrects leaves out")
    assert meta["ar_choice"] in (run / "report.md").read_text()


def test_the_input_lasso_shrinks_every_input_column_but_the_targets_after_each_step():
    config = forecast.Config(data=str(BEIJING), target="TEMP", lookback=24, hidden=8, base="ar,last", lr=1e-2)
    data = prepare(config)
    steps = {}
    for strength in (0.0, 3.0):
        model = forecast.build(config, len(data.series.columns))
        task = forecast.ForecastTask(model, data, config)
        optimizer, _ = forecast.make_optimizer(task, dataclasses.replace(config, input_lasso=strength))
        task.start_epoch(0)
        task.train_batch(0, 0)
        optimizer.step()
        steps[strength] = [np.linalg.norm(m.encoder.weight_ih_l0.data, axis=0) for m in model.members]
    for plain, lasso in zip(steps[0.0], steps[3.0]):                 # the same step, then the proximal one
        assert lasso[0] == plain[0]                                  # the target's column is left alone
        np.testing.assert_allclose(lasso[1:], np.maximum(0, plain[1:] - 1e-2 * 3.0), rtol=1e-5, atol=1e-6)


def test_a_numeric_column_whose_name_holds_an_equals_sign_is_its_own_column(tmp_path):
    """One-hot columns are "<column>=<label>", but the grouping by file column comes from where each
    column came from, not from its name: "rain=mm" is a number column of its own."""
    rng = np.random.default_rng(0)
    rows = ["t,y,rain=mm,wind"] + [f"{1900 + i},{np.sin(i / 3) + rng.normal():.3f},{rng.random():.3f},"
                                   f"{'NE' if i % 3 else 'SW'}" for i in range(80)]
    path = tmp_path / "weather.csv"
    path.write_text("\n".join(rows) + "\n")
    common = dict(data=str(path), target="y", time_col="t", lookback=6, split=(0.6, 0.2, 0.2), base="ar")
    named = prepare(forecast.Config(**common, ar_features=["rain=mm"]))
    assert [named.series.columns[j] for j in named.ar.columns] == ["y", "rain=mm"]
    assert named.series.sources == ["y", "rain=mm", "wind", "wind"]
    with pytest.raises(ValueError, match="'rain', but the inputs besides the target are rain=mm, wind"):
        prepare(forecast.Config(**common, ar_features=["rain"]))
    series = prepare(forecast.Config(**common)).series
    columns = series.columns + ["wind=SE"]                               # a label the new data lacks: zeros
    kept = aligned(series, columns, path)
    assert kept.columns == columns and kept.sources[-1] == "wind" and not kept.values[:, -1].any()
    without_rain = dataclasses.replace(series, values=series.values[:, [0, 2, 3]], columns=["y", "wind=NE", "wind=SW"],
                                       sources=["y", "wind", "wind"])
    with pytest.raises(ValueError, match="lacks the column 'rain=mm' that the model was trained with"):
        aligned(without_rain, series.columns, path)
