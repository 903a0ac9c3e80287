"""Baselines: what each predicts, what the fitted ones learn, determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest

from features import make_windows
from models.baselines import (
    AlwaysLongBaseline,
    Baseline,
    HistGBBaseline,
    LastReturnBaseline,
    RidgeBaseline,
    ZeroBaseline,
    default_baselines,
    evaluate_baselines,
)
from models.metrics import regression_metrics, uplift
from models.preprocessing import FeatureScaler


def _linear(n: int = 2000, f: int = 5, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    y = X @ np.array([0.5, -1.0, 0.0, 2.0, 0.25][:f]) + 0.1 * rng.normal(size=n)
    return X, y


def _nonlinear(n: int = 3000, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2, 2, size=(n, 3))
    y = np.sin(2 * X[:, 0]) * (X[:, 1] > 0) + 0.5 * X[:, 2] ** 2 - 0.65 + 0.2 * rng.normal(size=n)
    return X, y


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    return float(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))


def test_zero_baseline_predicts_zero() -> None:
    X, y = _linear(100)
    pred = ZeroBaseline().fit(X, y).predict(X[:7])
    assert pred.shape == (7,) and np.all(pred == 0.0)
    assert ZeroBaseline().name == "zero"


def test_always_long_directional_accuracy_is_the_up_share() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(400, 3))
    y = rng.normal(0.0004, 0.01, size=400)
    y[[3, 50, 377]] = 0.0  # no direction: left out of the accuracy and of the up-share
    for train_drift in (0.002, -0.002):  # a positive drift is the forecast; a negative one is not
        base = AlwaysLongBaseline().fit(X[:300], y[:300] + train_drift)
        pred = base.predict(X[300:])
        assert pred.shape == (100,) and np.all(pred > 0) and np.unique(pred).size == 1
        expected = np.mean(y[:300] + train_drift) if train_drift > 0 else AlwaysLongBaseline.MIN_FORECAST
        assert pred[0] == pytest.approx(expected)
        for block in (y[300:], y, np.abs(y), -np.abs(y) - 1e-9):
            da = regression_metrics(block, base.predict(np.zeros((block.size, 3))))["directional_accuracy"]
            moved = block[block != 0]
            assert da == pytest.approx(np.mean(moved > 0), abs=1e-15)
    assert AlwaysLongBaseline().name == "always_long"
    with pytest.raises(ValueError, match="not fitted"):
        AlwaysLongBaseline().predict(X)


def test_last_return_equals_the_column_scaled_to_horizon() -> None:
    X, y = _linear(100)
    pred = LastReturnBaseline(log_ret_column=3).fit(X, y).predict(X)
    np.testing.assert_array_equal(pred, X[:, 3])
    pred5 = LastReturnBaseline(log_ret_column=3, horizon=5).fit(X, y).predict(X)
    np.testing.assert_allclose(pred5, 5 * X[:, 3])
    # windows: the last row of each window is used
    windows, _ = make_windows(X, 4)
    np.testing.assert_array_equal(LastReturnBaseline(1).fit(windows, y[3:]).predict(windows), X[3:, 1])
    # standardised features with the scaler: back to raw log-return units
    scaler = FeatureScaler(clip=None).fit(X)
    Z = scaler.transform(X)
    unscaled = LastReturnBaseline(3, scaler=scaler).fit(Z, y).predict(Z)
    np.testing.assert_allclose(unscaled, X[:, 3], atol=1e-12)


def test_ridge_recovers_a_linear_signal() -> None:
    X, y = _linear()
    model = RidgeBaseline(alpha=1.0, seed=0).fit(X[:1500], y[:1500])
    assert _r2(y[1500:], model.predict(X[1500:])) > 0.98
    np.testing.assert_allclose(model.coef_, [0.5, -1.0, 0.0, 2.0, 0.25], atol=0.02)


def test_hist_gb_beats_zero_and_ridge_on_a_nonlinear_target() -> None:
    X, y = _nonlinear()
    tr, te = slice(0, 2400), slice(2400, 3000)
    gb = regression_metrics(y[te], HistGBBaseline(seed=0).fit(X[tr], y[tr]).predict(X[te]))
    zero = regression_metrics(y[te], ZeroBaseline().fit(X[tr], y[tr]).predict(X[te]))
    ridge = regression_metrics(y[te], RidgeBaseline().fit(X[tr], y[tr]).predict(X[te]))
    assert gb["rmse"] < 0.7 * zero["rmse"]
    assert gb["rmse"] < ridge["rmse"]
    assert gb["ic"] > 0.7


def test_determinism_with_the_same_seed() -> None:
    X, y = _nonlinear(1500)
    a = HistGBBaseline(seed=7).fit(X, y).predict(X)
    b = HistGBBaseline(seed=7).fit(X, y).predict(X)
    np.testing.assert_array_equal(a, b)
    r1 = RidgeBaseline(seed=7).fit(X, y).predict(X)
    r2 = RidgeBaseline(seed=7).fit(X, y).predict(X)
    np.testing.assert_array_equal(r1, r2)


def test_default_baselines_and_evaluate() -> None:
    bases = default_baselines(seed=3, log_ret_column=0, horizon=2)
    assert [b.name for b in bases] == ["zero", "always_long", "last_return", "ridge", "hist_gb"]
    assert all(isinstance(b, Baseline) for b in bases)
    assert [b.name for b in default_baselines(3, None)] == ["zero", "always_long", "ridge", "hist_gb"]
    X, y = _linear(600)
    report = evaluate_baselines(bases, X[:500], y[:500], X[500:], y[500:])
    assert list(report) == ["zero", "always_long", "last_return", "ridge", "hist_gb"]
    assert report["always_long"]["directional_accuracy"] == pytest.approx(np.mean(y[500:] > 0))
    u = uplift(report["ridge"], {k: v for k, v in report.items() if k != "ridge"}, metric="rmse")
    improvement = u["rmse_improvement"]
    assert isinstance(improvement, float) and improvement > 0  # ridge beats the others on a linear target
    with pytest.raises(ValueError, match="unique"):
        evaluate_baselines([ZeroBaseline(), ZeroBaseline()], X, y, X, y)


def test_baseline_errors() -> None:
    X, y = _linear(50)
    with pytest.raises(ValueError, match="not fitted"):
        RidgeBaseline().predict(X)
    with pytest.raises(ValueError, match="one value per sample"):
        ZeroBaseline().fit(X, y[:-1])
    with pytest.raises(ValueError, match="features"):
        RidgeBaseline().fit(X, y).predict(X[:, :3])
    with pytest.raises(ValueError, match="out of range"):
        LastReturnBaseline(log_ret_column=9).fit(X, y)
    with pytest.raises(ValueError, match="default_baselines"):
        LastReturnBaseline(log_ret_column=-1)
    with pytest.raises(ValueError, match="horizon"):
        LastReturnBaseline(0, horizon=0)
    with pytest.raises(ValueError, match="alpha"):
        RidgeBaseline(alpha=-1.0)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="column 2"):
        RidgeBaseline().fit(Xn, y)
    assert HistGBBaseline(max_iter=20).fit(Xn, y).predict(Xn).shape == (50,)  # trees accept NaN
    with pytest.raises(ValueError, match="2-D"):
        ZeroBaseline().fit(np.zeros(5), np.zeros(5))
