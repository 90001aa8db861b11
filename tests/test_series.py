"""Series data: CSV loading and cleaning, chronological splits, normalisation, sliding windows."""
import re
from pathlib import Path

import numpy as np
import pytest

from unrolled.data.series import load_series
from unrolled.data.windows import Normaliser, Windows, chronological_split

FIXTURES = Path(__file__).parent / "fixtures"
BEIJING = FIXTURES / "beijing_pm25_head.csv"
AIRLINE = FIXTURES / "airline-passengers.csv"


def write(tmp_path, text: str, name: str = "data.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ----- loading and cleaning ------------------------------------------------------------------------

def test_beijing_columns_time_missing_and_labels():
    s = load_series(BEIJING, "TEMP")
    assert s.columns == ["TEMP", "pm2.5", "DEWP", "PRES", "cbwd=NE", "cbwd=NW", "cbwd=SE", "cbwd=cv", "Iws", "Is", "Ir"]
    assert len(s) == 336 and s.frequency == "hourly" and s.default_season() == 24
    assert s.time[0] == np.datetime64("2010-01-01T00:00") and s.time[-1] == np.datetime64("2010-01-14T23:00")
    rows = [line.split(",") for line in BEIJING.read_text().splitlines()[1:]]
    np.testing.assert_array_equal(s.target_values, [float(r[7]) for r in rows])
    np.testing.assert_array_equal(s.values[:, 4:8].sum(1), 1.0)          # one label per row
    assert s.values[np.array([r[9] for r in rows]) == "SE", 6].all()
    report = " ".join(s.report)
    assert "year, month, day, hour" in report and "'No' only counts rows" in report
    assert "interpolated 24 missing values" in report and "pm2.5: 24" in report
    assert "one-hot encoded as 4 columns (NE, NW, SE, cv)" in report
    assert not np.isnan(s.values).any()
    np.testing.assert_array_equal(s.values[:24, 1], float(rows[24][5]))  # leading gap: the first known value


def test_airline_time_from_first_column():
    s = load_series(AIRLINE, "Passengers")
    assert s.columns == ["Passengers"] and len(s) == 144
    assert s.frequency == "monthly" and s.default_season() == 12
    assert s.time[0] == np.datetime64("1949-01") and s.target_values[:3].tolist() == [112, 118, 132]


def test_interpolation_is_linear_in_time_not_in_rows(tmp_path):
    path = write(tmp_path, "t,y,x\n2000-01-01 00:00,0,1\n2000-01-01 01:00,NA,2\n"
                           "2000-01-01 04:00,4,?\n2000-01-01 05:00,5,5\n")
    s = load_series(path, "y", time_col="t")
    np.testing.assert_allclose(s.values[:, 0], [0, 1, 4, 5])            # 1 h of 4 h, not half way
    np.testing.assert_allclose(s.values[:, 1], [1, 2, 4.25, 5])         # 3 h of the 4 h from 2 to 5
    assert "interpolated 2 missing values in time (y: 1, x: 1)." in s.report


def test_drop_missing_rows_and_labels(tmp_path):
    path = write(tmp_path, "y,wind,z\n1,N,10\n2,,11\n3,S,NA\n4,N,13\n5,S,14\n")
    s = load_series(path, "y", missing="drop")
    assert s.columns == ["y", "wind=N", "wind=S", "z"]
    np.testing.assert_array_equal(s.values, [[1, 1, 0, 10], [4, 1, 0, 13], [5, 0, 1, 14]])
    assert "dropped 2 rows with missing values (wind: 1, z: 1)." in s.report
    s = load_series(path, "y", categorical="drop")
    assert s.columns == ["y", "z"] and any("'wind' holds labels and is not used" in r for r in s.report)
    s = load_series(path, "y")                                           # labels: the previous label fills a gap
    np.testing.assert_array_equal(s.values[:, 1:3], [[1, 0], [1, 0], [0, 1], [1, 0], [0, 1]])


def test_explicit_features_keep_target_first(tmp_path):
    path = write(tmp_path, "a,b,c\n1,2,3\n4,5,6\n7,8,9\n")
    s = load_series(path, "b", features=["c"])
    assert s.columns == ["b", "c"]
    np.testing.assert_array_equal(s.values, [[2, 3], [5, 6], [8, 9]])


def test_rows_are_sorted_in_time_and_resampled(tmp_path):
    path = write(tmp_path, "day,y\n2000/01/02,4\n2000/01/01,1\n2000/01/01 12:00,3\n2000/01/02 06:00,6\n")
    s = load_series(path, "y", time_col="day")
    np.testing.assert_array_equal(s.values[:, 0], [1, 3, 4, 6])
    assert "rows were sorted into time order." in s.report
    d = load_series(path, "y", time_col="day", resample="daily")
    np.testing.assert_array_equal(d.values[:, 0], [2, 5])
    assert d.time.tolist() == np.array(["2000-01-01", "2000-01-02"], dtype="datetime64[D]").tolist()
    assert "resampled to daily means: 4 rows became 2." in d.report


@pytest.mark.parametrize("text, kwargs, message", [
    ("a,b\n1,2\n", dict(target="c"), "column 'c' is not in data.csv, whose columns are a, b."),
    ("a,b\n1,2\n", dict(target="a", features=["zz"]), "column 'zz' is not in data.csv"),
    ("a,b\n1,x\n2,y\n", dict(target="b"), "target column 'b' must hold numbers, but holds 'x'."),
    ("a,b\nNA,2\n?,3\n", dict(target="a"), "every value is missing"),
    ("", dict(target="a"), "is empty"),
    ("a,b\n", dict(target="a"), "has only the header"),
    ("a,b\n1,2\n3\n", dict(target="a"), "data row 2 has 1"),
    ("t,y\n2000-01-01,1\n01/02/2000,2\n", dict(target="y", time_col="t"), "data row 2 holds '01/02/2000'"),
    ("t,y\n2000-01-01,1\n2000-01-01,2\n", dict(target="y", time_col="t"), "2000-01-01 appears twice"),
    ("a,b\n1,2\n3,4\n", dict(target="a", resample="weekly"), "resample must be one of"),
])
def test_bad_input_is_one_sentence(tmp_path, text, kwargs, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        load_series(path, **kwargs)
    assert str(e.value).count(". ") == 0 and str(e.value).endswith(".")


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(ValueError, match="there is no such file"):
        load_series(tmp_path / "nope.csv", "a")
    (tmp_path / "bin.csv").write_bytes(b"a,b\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_series(tmp_path / "bin.csv", "a")


# ----- splits and normalisation ---------------------------------------------------------------------

def test_chronological_split_by_fractions_and_last_rows():
    assert chronological_split(100, (0.5, 0.25, 0.25)).sizes == (50, 25, 25)
    assert chronological_split(144, test_last=24).sizes == (80, 40, 24)
    assert chronological_split(144, test_last=24, val_last=12).sizes == (108, 12, 24)
    with pytest.raises(ValueError, match="add up to 1"):
        chronological_split(100, (0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="too few"):
        chronological_split(10, test_last=10)


def test_normaliser_never_sees_the_test_period(rng):
    values = rng.standard_normal((200, 3)) * [1, 10, 100] + [0, 5, -7]
    split = chronological_split(len(values), (0.6, 0.2, 0.2))
    norm = Normaliser.fit(values[:split.train_end])
    changed = values.copy()
    changed[split.train_end:] = 1e6                                       # validation and test rows
    again = Normaliser.fit(changed[:split.train_end])
    np.testing.assert_array_equal(norm.mean, again.mean)
    np.testing.assert_array_equal(norm.std, again.std)
    z = norm.transform(values)
    np.testing.assert_allclose(z[:split.train_end].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z[:split.train_end].std(0), 1, atol=1e-12)
    np.testing.assert_allclose(norm.inverse_target(z[:, 0]), values[:, 0], atol=1e-12)
    assert Normaliser.fit(np.ones((5, 1))).std[0] == 1.0                  # a constant column stays finite


# ----- windows ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("lookback, horizon, gap, stride", [(5, 1, 0, 1), (7, 3, 0, 2), (4, 2, 5, 3), (1, 1, 0, 1)])
def test_windows_stay_inside_their_period(lookback, horizon, gap, stride):
    n = 60
    values = np.arange(n * 2, dtype=np.float64).reshape(n, 2)
    split = chronological_split(n, (0.5, 0.25, 0.25))
    w = Windows(values, lookback, horizon, gap)
    train = w.origins(0, split.train_end, stride)
    val = w.origins(split.train_end, split.val_end)
    test = w.origins(split.val_end, n)
    periods = ((train, 0, split.train_end), (val, split.train_end, split.val_end), (test, split.val_end, n))
    for origins, lo, hi in periods:
        assert len(origins)
        rows = w.target_rows(origins)
        assert rows.min() >= lo and rows.max() < hi
        x = w.inputs(origins)                                             # (L, B, F)
        assert x.shape == (lookback, len(origins), 2)
        assert x[..., 0].min() >= 0
        np.testing.assert_array_equal(w.targets(origins), values[rows, 0])
    x_train = w.inputs(train)
    assert x_train[..., 0].max() / 2 < split.train_end                    # no training input reads past training
    assert w.target_rows(train).max() < split.train_end
    # every window whose targets fit in the period is there (stride 1): the first and last possible ones
    assert w.target_rows(test)[-1, -1] == n - 1 and w.target_rows(val)[0, 0] == split.train_end
    np.testing.assert_array_equal(np.diff(train), stride)


def test_windows_are_views_and_gather_the_right_rows():
    values = np.arange(30, dtype=np.float64).reshape(10, 3)
    w = Windows(values, lookback=4, horizon=2, gap=1)
    assert np.shares_memory(w._inputs, values) and np.shares_memory(w._targets, values)
    x = w.inputs(np.array([3, 5]))
    np.testing.assert_array_equal(x[:, 1], values[2:6])                   # rows t-3 .. t of window t=5
    np.testing.assert_array_equal(w.targets(np.array([3, 5])), [[15, 18], [21, 24]])  # rows t+2, t+3
    assert w.origins(0, 10).tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError, match="fewer than the lookback"):
        Windows(values, lookback=11, horizon=1)


def test_calendar_features_follow_the_clock():
    from unrolled.data.series import with_calendar
    s = with_calendar(load_series(BEIJING, "TEMP"))
    assert s.columns[-4:] == ["day_sin", "day_cos", "year_sin", "year_cos"]
    hour6 = s.values[6, -4:]                                              # 2010-01-01 06:00: a quarter of the day
    np.testing.assert_allclose(hour6[:2], [1, 0], atol=1e-12)
    np.testing.assert_allclose(hour6[2:], [np.sin(2 * np.pi * 0.25 / 365.2425), np.cos(2 * np.pi * 0.25 / 365.2425)])
    monthly = with_calendar(load_series(AIRLINE, "Passengers"))
    assert monthly.columns == ["Passengers", "year_sin", "year_cos"]      # no time of day for monthly rows
    with pytest.raises(ValueError, match="calendar features need a time column"):
        from unrolled.data.series import Series
        with_calendar(Series(np.zeros((3, 1)), ["y"]))


@pytest.mark.parametrize("times, unit, expected", [
    (["1960-10-01", "1960-11-01", "1960-12-01"], "D", ["1961-01-01", "1961-02-01", "1961-03-01"]),  # not 03-04
    (["1985-04-01", "1985-07-01", "1985-10-01"], "D", ["1986-01-01", "1986-04-01", "1986-07-01"]),  # quarters
    (["1941", "1942", "1943"], "m", ["1944-01-01T00:00", "1945-01-01T00:00", "1946-01-01T00:00"]),  # years
    (["2010-01-01T00", "2010-01-01T01"], "h", ["2010-01-01T02", "2010-01-01T03", "2010-01-01T04"]),
    (["2010-01-30", "2010-01-31"], "D", ["2010-02-01", "2010-02-02", "2010-02-03"]),
    (["2020-01-31", "2020-02-29", "2020-03-31"], "D", ["2020-04-30", "2020-05-31", "2020-06-30"]),  # month ends
    (["2010-01-31T23", "2010-02-28T23"], "h", ["2010-03-28T23", "2010-04-25T23", "2010-05-23T23"]),
])
def test_future_times_step_calendar_months_for_month_starts_and_ends(times, unit, expected):
    from unrolled.tasks.forecast_data import future_times
    got = future_times(np.array(times, dtype=f"datetime64[{unit}]"), np.arange(1, 4))
    assert [str(t) for t in got] == expected


def test_times_with_a_zone_are_read_in_utc_without_a_warning():
    import warnings
    from unrolled.data.series_io import parse_times
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        times = parse_times(np.array(["2010-01-01T00:00Z", "2010-01-01T09:00+08:00"]), "time")
    assert [str(t) for t in times] == ["2010-01-01T00:00", "2010-01-01T01:00"]
