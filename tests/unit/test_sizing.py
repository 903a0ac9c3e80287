"""The desk's sizing rule: weights from forecasts, and quantities by the backtest's rebalance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.engine import run
from config.trading import SizingConfig
from execution.sizing import confidence, forecast_weights, rebalance_quantities, vol_scale
from market.rebalance import Costs


def test_weights_follow_the_backtest_rule_then_confidence_then_the_split() -> None:
    forecasts = {"A": (0.01, 0.9), "B": (-0.01, 0.1), "C": (0.0001, 0.52), "D": (0.0, 0.5)}
    long_flat = forecast_weights(forecasts, SizingConfig(), universe=4)
    assert long_flat == {"A": 0.25, "B": 0.0, "C": 0.25, "D": 0.0}
    long_short = forecast_weights(forecasts, SizingConfig(strategy="long_short", threshold=0.001), universe=4)
    assert long_short == {"A": 0.25, "B": -0.25, "C": 0.0, "D": 0.0}
    sure = forecast_weights(forecasts, SizingConfig(min_confidence=0.5), universe=2)
    assert sure == {"A": 0.5, "B": 0.0, "C": 0.0, "D": 0.0}
    capped = forecast_weights(forecasts, SizingConfig(max_weight=0.1), universe=1, scales={"A": 0.5})
    assert capped["A"] == 0.1 and capped["C"] == 0.1
    scaled = forecast_weights(forecasts, SizingConfig(), universe=1, scales={"A": 0.5})
    assert scaled["A"] == 0.5
    assert confidence(0.5) == 0.0 and confidence(0.75) == 0.5 and confidence(0.0) == 1.0


def test_vol_scale_is_target_over_realised_vol_capped_at_one() -> None:
    closes = np.exp(np.cumsum(np.tile([0.01, -0.01], 20)))
    returns = np.diff(np.log(closes[-21:]))
    vol = float(np.std(returns, ddof=1) * np.sqrt(252))
    assert vol_scale(closes, target=0.05, window=20, bars_per_year=252) == pytest.approx(0.05 / vol)
    assert vol_scale(closes, target=10.0, window=20, bars_per_year=252) == 1.0
    assert vol_scale(np.ones(30), target=0.1, window=20, bars_per_year=252) == 1.0
    with pytest.raises(ValueError):
        vol_scale(closes, target=0.0, window=20, bars_per_year=252)


def test_quantities_by_hand() -> None:
    # flat, 10,000 cash, buy w=1 at 100 with a 10 bps fee: X = 10000 / 1.001, units = X / 100
    q = rebalance_quantities({"A": 1.0}, {}, {}, 10_000.0, {"A": 100.0}, fee_rate=0.001)
    assert q == {"A": pytest.approx(10_000 / 1.001 / 100, rel=1e-12)}
    # unchanged target: no trade, whatever the drift
    assert rebalance_quantities({"A": 1.0}, {"A": 1.0}, {"A": 99.0}, 5.0, {"A": 120.0}, fee_rate=0.001) == {}
    # 1 -> 0: sell everything
    assert rebalance_quantities({"A": 0.0}, {"A": 1.0}, {"A": 99.0}, 5.0, {"A": 120.0}, fee_rate=0.001) == {
        "A": pytest.approx(-99.0)
    }
    with pytest.raises(ValueError, match="no usable quote for B"):
        rebalance_quantities({"B": 1.0}, {}, {}, 1.0, {}, fee_rate=0.0)


def test_quantities_walk_the_backtest_units_exactly() -> None:
    rng = np.random.default_rng(3)
    n = 120
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = close * np.exp(rng.normal(0, 0.002, n))
    index = pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")
    bars = pd.DataFrame(
        {"open": open_, "high": np.maximum(open_, close) * 1.01, "low": np.minimum(open_, close) * 0.99,
         "close": close, "volume": 1e6},
        index=pd.DatetimeIndex(index, name="ts"),
    )  # fmt: skip
    targets = pd.Series(rng.choice([-1.0, 0.0, 0.5, 1.0], n), index=bars.index)
    result = run(bars, targets, costs=Costs(commission_bps=3.0, slippage_bps=0.0), initial_capital=1000.0)
    units, cash, prev, equity = 0.0, 1000.0, 0.0, []
    for t in range(n):
        if t > 0:  # the target of bar t-1 fills at the open of bar t
            q = rebalance_quantities(
                {"A": targets.iloc[t - 1]}, {"A": prev}, {"A": units}, cash, {"A": open_[t]}, fee_rate=3e-4
            )
            prev = targets.iloc[t - 1]
            delta = q.get("A", 0.0)
            cash -= delta * open_[t] + 3e-4 * abs(delta) * open_[t]
            units += delta
        equity.append(cash + units * close[t])
    np.testing.assert_allclose(equity, result.equity.to_numpy(), rtol=1e-10)
