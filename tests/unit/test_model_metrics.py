"""Forecast metrics against hand-computed numbers and scipy, fold summaries, uplift direction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from models.metrics import METRIC_DIRECTIONS, regression_metrics, summarize_folds, uplift


def test_metrics_hand_computed() -> None:
    y_true = [0.01, -0.02, 0.0, 0.03]
    y_pred = [0.02, 0.01, 0.01, 0.0]
    m = regression_metrics(y_true, y_pred)
    # errors 0.01, 0.03, 0.01, -0.03: squares 1e-4, 9e-4, 1e-4, 9e-4 -> mean 5e-4
    assert m["rmse"] == pytest.approx(math.sqrt(5e-4))
    assert m["mae"] == pytest.approx(0.02)
    # true 0.0 excluded; hits: + vs + (1), - vs + (0), + vs 0 (no call: 1/2) -> 1.5 / 3
    assert m["directional_accuracy"] == pytest.approx(0.5)
    assert set(m) == {"rmse", "mae", "directional_accuracy", "ic", "rank_ic"}
    assert all(isinstance(v, float) for v in m.values())


def test_metrics_match_numpy_and_scipy() -> None:
    rng = np.random.default_rng(3)
    y_true = rng.normal(0, 0.01, 500)
    y_pred = 0.3 * y_true + rng.normal(0, 0.01, 500)
    y_pred[:20] = y_pred[20]  # ties for the rank IC
    m = regression_metrics(y_true, y_pred)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((y_pred - y_true) ** 2)))
    assert m["mae"] == pytest.approx(np.mean(np.abs(y_pred - y_true)))
    assert m["directional_accuracy"] == pytest.approx(np.mean(np.sign(y_pred) == np.sign(y_true)))
    assert m["ic"] == pytest.approx(stats.pearsonr(y_true, y_pred).statistic, abs=1e-12)
    assert m["rank_ic"] == pytest.approx(stats.spearmanr(y_true, y_pred).statistic, abs=1e-12)
    assert 0.1 < m["ic"] < 0.6


def test_perfect_and_inverse_forecasts() -> None:
    y = np.array([0.01, -0.02, 0.03, -0.005, 0.002])
    m = regression_metrics(y, y)
    assert m["rmse"] == 0.0 and m["mae"] == 0.0
    assert (
        m["directional_accuracy"] == 1.0
        and m["ic"] == pytest.approx(1.0)
        and m["rank_ic"] == pytest.approx(1.0)
    )
    inv = regression_metrics(y, -y)
    assert inv["directional_accuracy"] == 0.0 and inv["ic"] == pytest.approx(-1.0)


def test_constant_side_gives_nan_ic_and_zero_prediction_half_accuracy() -> None:
    y = np.array([0.01, -0.02, 0.03, -0.005])
    m = regression_metrics(y, np.zeros(4))
    assert math.isnan(m["ic"]) and math.isnan(m["rank_ic"])
    assert m["directional_accuracy"] == 0.5
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean(y**2)))
    flat_truth = regression_metrics(np.full(4, 0.01), y)
    assert math.isnan(flat_truth["ic"])
    all_zero = regression_metrics(np.zeros(3), [0.1, -0.1, 0.0])
    assert math.isnan(all_zero["directional_accuracy"])
    one = regression_metrics([0.01], [0.02])
    assert math.isnan(one["ic"]) and one["directional_accuracy"] == 1.0


def test_metrics_errors() -> None:
    with pytest.raises(ValueError, match="same length"):
        regression_metrics([0.1, 0.2], [0.1])
    with pytest.raises(ValueError, match="at least one"):
        regression_metrics([], [])
    with pytest.raises(ValueError, match="y_pred has 1 NaN"):
        regression_metrics([0.1, 0.2], [0.1, np.nan])
    with pytest.raises(ValueError, match="1-D"):
        regression_metrics(np.zeros((3, 2)), np.zeros((3, 2)))
    column = regression_metrics(np.array([[0.1], [0.2]]), [0.1, 0.3])
    assert column["mae"] == pytest.approx(0.05)


def test_summarize_folds() -> None:
    folds = [
        {"rmse": 1.0, "ic": 0.1},
        {"rmse": 2.0, "ic": math.nan},
        {"rmse": 4.0, "ic": 0.3},
    ]
    s = summarize_folds(folds)
    assert list(s) == ["rmse_mean", "rmse_std", "ic_mean", "ic_std"]
    assert s["rmse_mean"] == pytest.approx(7 / 3)
    assert s["rmse_std"] == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert s["ic_mean"] == pytest.approx(0.2)  # the NaN fold is left out
    assert s["ic_std"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    single = summarize_folds([{"rmse": 1.5}])
    assert single["rmse_mean"] == 1.5 and math.isnan(single["rmse_std"])
    with pytest.raises(ValueError, match="non-empty"):
        summarize_folds([])
    with pytest.raises(ValueError, match="must match"):
        summarize_folds([{"rmse": 1.0}, {"mae": 1.0}])


def test_uplift_direction_and_best_baseline() -> None:
    model = {"rmse": 0.9, "mae": 0.8, "directional_accuracy": 0.56, "ic": 0.05, "rank_ic": 0.04}
    baselines = {
        "zero": {"rmse": 1.0, "mae": 0.7, "directional_accuracy": 0.5, "ic": math.nan, "rank_ic": math.nan},
        "ridge": {"rmse": 0.95, "mae": 0.9, "directional_accuracy": 0.52, "ic": 0.08, "rank_ic": 0.01},
    }
    u = uplift(model, baselines)
    # lower is better: best baseline is the lowest; positive improvement = model better
    assert u["rmse_best_baseline"] == "ridge" and u["rmse_baseline"] == 0.95
    assert u["rmse_improvement"] == pytest.approx(0.05)
    assert u["rmse_relative_improvement"] == pytest.approx(0.05 / 0.95)
    assert u["mae_best_baseline"] == "zero" and u["mae_improvement"] == pytest.approx(-0.1)
    # higher is better: best baseline is the highest; NaN baselines are not candidates
    assert u["directional_accuracy_best_baseline"] == "ridge"
    assert u["directional_accuracy_improvement"] == pytest.approx(0.04)
    assert u["ic_best_baseline"] == "ridge" and u["ic_improvement"] == pytest.approx(-0.03)
    assert u["rank_ic_model"] == 0.04 and u["rank_ic_improvement"] == pytest.approx(0.03)
    only_rmse = uplift(model, baselines, metric="rmse")
    assert set(only_rmse) == {
        "rmse_best_baseline",
        "rmse_baseline",
        "rmse_model",
        "rmse_improvement",
        "rmse_relative_improvement",
    }


def test_uplift_on_fold_summaries_and_errors() -> None:
    model = summarize_folds([{"rmse": 1.0, "ic": 0.2}, {"rmse": 1.2, "ic": 0.1}])
    base = {"zero": summarize_folds([{"rmse": 1.3, "ic": math.nan}, {"rmse": 1.3, "ic": math.nan}])}
    u = uplift(model, base)
    assert u["rmse_mean_improvement"] == pytest.approx(0.2)
    ic_improvement = u["ic_mean_improvement"]
    assert u["ic_mean_best_baseline"] is None
    assert isinstance(ic_improvement, float) and math.isnan(ic_improvement)
    assert not any(k.startswith("rmse_std") for k in u)
    with pytest.raises(ValueError, match="at least one baseline"):
        uplift(model, {})
    with pytest.raises(ValueError, match="no known direction"):
        uplift(model, base, metric="rmse_std")
    with pytest.raises(ValueError, match="have no metric"):
        uplift({"rmse": 1.0}, {"zero": {"mae": 1.0}}, metric="rmse")
    assert set(METRIC_DIRECTIONS) == {"rmse", "mae", "directional_accuracy", "ic", "rank_ic"}
