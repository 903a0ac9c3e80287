"""What the training recipe learns and what it must never see.

A planted AR(1) signal is learned (out-of-sample IC near what the process allows, beating the zero
forecast); the same returns shuffled in time teach nothing; changing only test-period data changes
neither the scaler, the walk-forward results nor the tuned hyperparameters.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from config.models import ForecasterConfig
from features import get_feature_set
from models.forecaster.training import LSTM, train_forecaster
from models.forecaster.tuning import tune
from providers.csv import parse_bars_csv

pytestmark = pytest.mark.slow

PHI = 0.5  # AR(1) coefficient: the best forecast phi * r[t] has IC = phi with the next return


def _bars_from_returns(returns: np.ndarray, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(returns))
    open_ = np.concatenate(([100.0], close[:-1]))
    wick = np.abs(rng.normal(0, 0.002, len(close)))
    index = pd.date_range("2010-01-01", periods=len(close), freq="D", tz="UTC", name="ts")
    return pd.DataFrame(
        {
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wick),
            "low": np.minimum(open_, close) * (1 - wick),
            "close": close,
            "volume": rng.uniform(1e5, 2e5, len(close)),
        },
        index=index,
    )


def _ar1(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 0.01, n)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = PHI * r[t - 1] + noise[t]
    return r


CONFIG = ForecasterConfig(
    symbol="AR1", lookback=10, units=(16,), epochs=20, patience=4, walk_forward={"folds": 2}, seed=11
)


def test_a_planted_signal_is_learned_and_shuffled_returns_teach_nothing() -> None:
    returns = _ar1(3000, seed=5)
    minimal = get_feature_set("minimal")
    planted = train_forecaster(_bars_from_returns(returns), minimal, CONFIG)
    lstm, zero = planted.test_metrics[LSTM], planted.test_metrics["zero"]
    assert lstm["ic"] > 0.35  # the process allows 0.5
    assert lstm["rmse"] < 0.93 * zero["rmse"]  # the best forecast reaches sqrt(1 - phi^2) = 0.87
    assert lstm["directional_accuracy"] > 0.6
    assert not any(
        name.startswith("fwd_") for name in planted.dataset.feature_names
    )  # labels never in inputs

    shuffled = np.random.default_rng(9).permutation(returns)
    noise = train_forecaster(_bars_from_returns(shuffled), minimal, CONFIG)
    assert abs(noise.test_metrics[LSTM]["ic"]) < 0.15
    assert noise.test_metrics[LSTM]["rmse"] > 0.97 * noise.test_metrics["zero"]["rmse"]


def _googl() -> pd.DataFrame:
    return parse_bars_csv(Path(__file__).parents[2] / "data" / "samples" / "googl_daily.csv").bars


def test_test_period_data_changes_neither_scaler_nor_walk_forward_nor_tuning(tmp_path: Path) -> None:
    bars = _googl()
    minimal = get_feature_set("minimal")
    config = ForecasterConfig(
        symbol="GOOGL",
        lookback=10,
        units=(4,),
        epochs=2,
        walk_forward={"folds": 2},
        tuning={"trials": 2, "epochs": 1},
        seed=2,
    )
    original = train_forecaster(bars, minimal, config)
    test_start = original.windows["test"][0]
    changed = bars.copy()
    after = changed.index >= test_start
    noise = np.exp(np.random.default_rng(1).normal(0, 0.02, after.sum()))
    for col in ("open", "high", "low", "close"):
        changed.loc[after, col] = changed.loc[after, col] * noise
    changed["high"] = changed[["open", "high", "low", "close"]].max(axis=1)
    changed["low"] = changed[["open", "high", "low", "close"]].min(axis=1)
    altered = train_forecaster(changed, minimal, config)

    np.testing.assert_array_equal(original.final.scaler.mean_, altered.final.scaler.mean_)
    np.testing.assert_array_equal(original.final.scaler.scale_, altered.final.scaler.scale_)
    assert original.fold_metrics == altered.fold_metrics
    assert original.windows == altered.windows
    assert original.test_metrics[LSTM] != altered.test_metrics[LSTM]  # the change did reach the test block

    tuned = tune(bars, minimal, config, f"sqlite:///{tmp_path / 'a.db'}")
    tuned_altered = tune(changed, minimal, config, f"sqlite:///{tmp_path / 'b.db'}")
    assert tuned.best_params == tuned_altered.best_params and tuned.best_value == tuned_altered.best_value
