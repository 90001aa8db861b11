"""Baselines and forecast metrics on series small enough to compute by hand."""
import numpy as np
import pytest

from unrolled.data.windows import Windows
from unrolled.forecasting import metrics
from unrolled.forecasting.baselines import LinearAR, moving_average, persistence, seasonal_naive, select_columns

Y = np.arange(1.0, 11.0)            # 1, 2, ..., 10 (row r holds r + 1)


def test_persistence_repeats_the_last_value():
    np.testing.assert_array_equal(persistence(Y, np.array([5, 7]), 3), [[6, 6, 6], [8, 8, 8]])
    np.testing.assert_array_equal(persistence(Y, np.array([5]), 2, gap=2), [[6, 6]])


def test_seasonal_naive_goes_back_whole_seasons():
    # season 4 at t=5: steps 1..3 come from rows 2, 3, 4
    np.testing.assert_array_equal(seasonal_naive(Y, np.array([5]), 3, season=4), [[3, 4, 5]])
    # season 2: step 1 -> row 4, step 2 -> row 5, step 3 -> row 4 (two seasons back)
    np.testing.assert_array_equal(seasonal_naive(Y, np.array([5]), 3, season=2), [[5, 6, 5]])
    # gap 1 shifts the steps to 2..4: rows 3, 4, 5
    np.testing.assert_array_equal(seasonal_naive(Y, np.array([5]), 3, season=4, gap=1), [[4, 5, 6]])
    # season 1 is persistence
    np.testing.assert_array_equal(seasonal_naive(Y, np.array([5, 6]), 2, season=1), persistence(Y, np.array([5, 6]), 2))
    with pytest.raises(ValueError, match="needs 8 rows of history"):
        seasonal_naive(Y, np.array([5]), 1, season=8)


def test_moving_average_of_the_last_values():
    np.testing.assert_array_equal(moving_average(Y, np.array([5, 9]), 2, window=3), [[5, 5], [9, 9]])
    np.testing.assert_array_equal(moving_average(Y, np.array([0]), 1, window=1), [[1]])
    with pytest.raises(ValueError, match="needs 4 rows of history"):
        moving_average(Y, np.array([2]), 1, window=4)


def test_linear_ar_recovers_an_exact_autoregression():
    y = np.zeros(300)
    y[:2] = [1.0, -0.5]
    for t in range(2, len(y)):
        y[t] = 0.6 * y[t - 1] - 0.3 * y[t - 2] + 1.0 + 0.1 * np.sin(t)   # a driven AR(2)
    x = np.stack([y, np.sin(np.arange(len(y)) + 1)], axis=1)             # the input that drives step t+1
    w = Windows(x, lookback=2, horizon=1)
    train, test = w.origins(0, 200), w.origins(200, 300)
    ar = LinearAR(ridge=0.0, chunk=7).fit(w, train)                      # chunks must add up exactly
    np.testing.assert_allclose(ar.predict(w, test), w.targets(test), atol=1e-9)
    # design columns (row-major over lookback, features): y[t-1], s[t-1], y[t], s[t], 1
    np.testing.assert_allclose(ar.coef[:, 0], [-0.3, 0, 0.6, 0.1, 1.0], atol=1e-9)
    shrunk = LinearAR(ridge=1e6).fit(w, train)                          # a huge ridge leaves only the intercept
    np.testing.assert_allclose(shrunk.predict(w, test), w.targets(train).mean(), atol=1e-3)


def driven_series_with_noise(n: int = 400, seed: int = 0) -> np.ndarray:
    """(n, 4) columns y, s, u, v: y an AR(2) driven by s (plus a little noise); u and v unrelated noise."""
    rng = np.random.default_rng(seed)
    s, u, v = rng.standard_normal((3, n))
    y = np.zeros(n)
    for t in range(2, n):
        y[t] = 0.6 * y[t - 1] - 0.3 * y[t - 2] + s[t - 1] + 0.3 * rng.standard_normal()
    return np.stack([y, s, u, v], axis=1)


def test_linear_ar_over_some_columns_is_the_ar_of_those_columns():
    x = driven_series_with_noise()
    w, only = Windows(x, lookback=3, horizon=2), Windows(x[:, [0, 2]], lookback=3, horizon=2)
    train, test = w.origins(0, 300), w.origins(300, 400)
    some = LinearAR(columns=[0, 2]).fit(w, train)
    np.testing.assert_allclose(some.predict(w, test), LinearAR().fit(only, train).predict(only, test), atol=1e-10)


def test_backward_elimination_drops_the_columns_that_do_not_help_on_validation():
    x = driven_series_with_noise()
    w = Windows(x, lookback=12, horizon=1)
    train, val = w.origins(0, 80), w.origins(80, 400)     # few training windows: noise columns overfit
    ar, kept, steps = select_columns(w, train, val, {"s": [1], "noise": [2, 3]}, ridge=0.0)
    assert kept == ["s"] and list(steps) == ["all", "-noise"] and steps["-noise"] < steps["all"]
    direct = LinearAR(ridge=0.0, columns=[0, 1]).fit(w, train)      # the AR returned: that of a direct fit
    np.testing.assert_allclose(ar.predict(w, val), direct.predict(w, val), atol=1e-9)
    assert steps["-noise"] == pytest.approx(np.abs(direct.predict(w, val) - w.targets(val)).mean(), rel=1e-9)
    kept = select_columns(w, w.origins(0, 350), w.origins(350, 400), {"s": [1]})[1]
    assert kept == ["s"]                                              # the driving input stays
    x = driven_series_with_noise(seed=1)
    zeros = np.concatenate([x, np.zeros((len(x), 1))], axis=1)       # a column of zeros changes nothing...
    wz = Windows(zeros, lookback=3, horizon=1)
    kept, steps = select_columns(wz, wz.origins(0, 300), wz.origins(300, 400), {"s": [1], "zero": [4]})[1:]
    assert kept == ["s", "zero"] and list(steps) == ["all"]          # ...so rounding does not remove it


def test_linear_ar_errors():
    w = Windows(np.zeros((10, 1)), lookback=2, horizon=1)
    with pytest.raises(ValueError, match="call fit"):
        LinearAR().predict(w, np.array([3]))
    with pytest.raises(ValueError, match="at least one training window"):
        LinearAR().fit(w, np.array([], dtype=np.int64))


# ----- metrics ---------------------------------------------------------------------------------------

def test_metrics_by_hand():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[1.0, 3.0], [5.0, 4.0]])             # errors 0, 1, 2, 0
    assert metrics.mae(y, p) == 0.75
    assert metrics.rmse(y, p) == pytest.approx(np.sqrt(5 / 4), rel=1e-15)
    assert metrics.smape(y, p) == pytest.approx(200 * (1 / 5 + 2 / 8) / 4, rel=1e-15)
    assert metrics.smape(np.zeros(2), np.zeros(2)) == 0.0
    assert metrics.naive_scale(np.array([1.0, 3.0, 2.0, 5.0])) == 2.0              # |2|, |1|, |3|
    assert metrics.naive_scale(np.array([1.0, 3.0, 2.0, 5.0]), season=2) == 1.5    # |1|, |2|
    assert metrics.mase(y, p, 2.0) == 0.375
    s = metrics.summary(y, p, 1.5)
    assert s == {"mae": 0.75, "rmse": pytest.approx(1.118033988749895), "smape": pytest.approx(22.5), "mase": 0.5}
    curves = metrics.by_horizon(y, p)
    np.testing.assert_array_equal(curves["mae"], [1.0, 0.5])
    np.testing.assert_allclose(curves["rmse"], [np.sqrt(2), np.sqrt(0.5)])
    with pytest.raises(ValueError, match="more than season=4"):
        metrics.naive_scale(np.ones(4), season=4)
