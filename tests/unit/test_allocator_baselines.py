"""The allocator's baselines: long only within the caps, no look-ahead, the band, buy and hold, and
their targets traded by backtest.run as the account they were computed on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import Costs, run
from models.allocator.baselines import (
    BUY_AND_HOLD,
    EQUAL_WEIGHT,
    MAX_SHARPE,
    MIN_VARIANCE,
    BaselineOptions,
    banded_targets,
    baseline_targets,
    max_sharpe_weights,
    min_variance_weights,
)

COSTS = Costs(commission_bps=5, slippage_bps=5, min_fee=1e-5)


def _closes(seed: int = 0, n: int = 160, vols: tuple[float, ...] = (0.01, 0.02, 0.03, 0.015)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    returns = rng.normal(0.0005, vols, size=(n, len(vols)))
    return 100.0 * np.exp(np.cumsum(returns, axis=0))


def _frames(close: np.ndarray, open_: np.ndarray) -> dict[str, pd.DataFrame]:
    index = pd.date_range("2021-01-01", periods=len(close), freq="D", tz="UTC")
    return {
        f"A{j}": pd.DataFrame({"open": open_[:, j], "close": close[:, j]}, index=index)
        for j in range(close.shape[1])
    }


@pytest.mark.parametrize("estimate", [min_variance_weights, max_sharpe_weights])
def test_weights_at_t_ignore_every_later_price(estimate) -> None:
    close = _closes()
    t = 100
    before = estimate(close, window=40, max_weight=0.6, first=90)
    shocked = close.copy()
    shocked[t + 1 :] *= np.exp(np.random.default_rng(9).normal(0, 0.2, size=shocked[t + 1 :].shape))
    after = estimate(shocked, window=40, max_weight=0.6, first=90)
    np.testing.assert_array_equal(before[: t + 1], after[: t + 1])
    assert not np.allclose(before[t + 1 :], after[t + 1 :])  # the later rows did read the change


@pytest.mark.parametrize("estimate", [min_variance_weights, max_sharpe_weights])
def test_long_only_within_max_weight_and_budget(estimate) -> None:
    weights = estimate(_closes(), window=40, max_weight=0.4, first=40)
    assert (weights >= 0).all() and (weights <= 0.4 + 1e-9).all()
    assert (weights.sum(axis=1) <= 1 + 1e-9).all()


def test_min_variance_prefers_the_quiet_asset() -> None:
    weights = min_variance_weights(_closes(vols=(0.005, 0.03, 0.03, 0.03)), window=60, first=60)
    # Ledoit-Wolf shrinks toward equal variances, so less than the 0.92 of the true covariance
    assert weights[60:, 0].min() > 0.5 and weights[60:, 1:].max() < 0.2


def test_max_sharpe_holds_cash_when_nothing_grows() -> None:
    close = 100.0 * np.exp(np.cumsum(np.full((80, 3), -0.002), axis=0))
    close *= np.exp(np.random.default_rng(1).normal(0, 1e-4, size=close.shape))
    assert max_sharpe_weights(close, window=30, first=30)[30:].sum() == 0.0


def test_band_zero_rebalances_to_equal_weight_every_bar() -> None:
    close = _closes(n=60)
    open_ = np.vstack([close[:1], close[:-1]])
    desired = np.full(close.shape, 0.25)
    targets = banded_targets(
        desired, open_, close, np.ones(close.shape, bool), band=0.0, costs=COSTS, initial_capital=1.0
    )
    np.testing.assert_allclose(targets, 0.25, rtol=1e-15)
    result = run(
        _frames(close, open_),
        pd.DataFrame(
            targets,
            columns=[f"A{j}" for j in range(4)],
            index=pd.date_range("2021-01-01", periods=60, freq="D", tz="UTC"),
        ),
        COSTS,
    )
    fills = result.trades  # every bar re-sizes each asset: the fills are many, the round trips 4
    assert len(result.trades) == 4 and not fills.empty
    assert result.costs_paid > 4 * 58 * 1e-5  # a minimum fee per asset and bar, at least


def test_band_rebalances_an_asset_only_when_its_drift_crosses_the_band() -> None:
    # An independent account without costs: units = w * E / open at each fill, marked at the close.
    close = _closes(n=200, vols=(0.03, 0.03, 0.03, 0.03))
    open_ = close * np.exp(np.random.default_rng(4).normal(0, 0.005, size=close.shape))
    band, n = 0.04, 4
    targets = banded_targets(
        np.full(close.shape, 0.25), open_, close, np.ones(close.shape, bool), band=band, costs=Costs(0, 0)
    )
    units, cash, expected = np.zeros(n), 1.0, []
    for t in range(199):
        equity = cash + units @ close[t]
        moving = np.abs(0.25 - units * close[t] / equity) >= band
        expected.append(moving)
        if moving.any():
            value = cash + units @ open_[t + 1]
            new_units = np.where(moving, 0.25 * value / open_[t + 1], units)
            cash -= (new_units - units) @ open_[t + 1]
            units = new_units
    traded = np.vstack([targets[:1] != 0, targets[1:-1] != targets[:-2]])
    np.testing.assert_array_equal(traded, np.array(expected))
    assert 5 < traded[1:].sum() < 100  # some rebalances after the first fill, far fewer than bars
    np.testing.assert_allclose(targets, 0.25, rtol=1e-15)  # always back to equal weight (to 1 ulp)
    index = pd.date_range("2021-01-01", periods=200, freq="D", tz="UTC")
    frame = pd.DataFrame(targets, index=index, columns=[f"A{j}" for j in range(n)])
    result = run(_frames(close, open_), frame, Costs(0, 0))
    assert result.equity.iloc[-1] == pytest.approx(cash + units @ close[-1], rel=1e-12)


def test_buy_and_hold_trades_once() -> None:
    close = _closes(n=120)
    open_ = np.vstack([close[:1], close[:-1]])
    index = pd.date_range("2021-01-01", periods=120, freq="D", tz="UTC")
    options = BaselineOptions(band=0.01, window=30, costs=COSTS)
    out = baseline_targets(
        open_,
        close,
        np.ones(close.shape, bool),
        options,
        index=index,
        assets=("A0", "A1", "A2", "A3"),
        start=40,
        names=(BUY_AND_HOLD, EQUAL_WEIGHT, MIN_VARIANCE, MAX_SHARPE),
    )
    assert list(out) == [BUY_AND_HOLD, EQUAL_WEIGHT, MIN_VARIANCE, MAX_SHARPE]
    frames = {k: v.iloc[40:] for k, v in _frames(close, open_).items()}
    hold = run(frames, out[BUY_AND_HOLD], COSTS)
    assert len(hold.trades) == 4 and hold.trades["open"].all()
    assert hold.costs_paid == pytest.approx(4 * 1e-5 + 1e-3 * (1 - 4 * 1e-5) / (1 + 1e-3), rel=1e-6)
    rebalanced = run(frames, out[EQUAL_WEIGHT], COSTS)
    assert rebalanced.costs_paid > hold.costs_paid
    for name in (MIN_VARIANCE, MAX_SHARPE):
        assert out[name].index.equals(index[40:]) and (out[name].sum(axis=1) <= 1 + 1e-9).all()
