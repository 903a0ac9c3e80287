""":func:`backtest.metrics.performance_metrics` on hand-made series, against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.metrics import METRIC_NAMES, performance_metrics

# r = 0.10, -0.05, 0.02, -0.10, 0.05
# wealth 1.1, 1.045, 1.0659, 0.95931, 1.0072755 -> total 0.0072755
# peak 1.1 from bar 0: drawdowns -0.05, -0.031, -0.1279, -0.0842950 -> max -0.1279, 4 bars under
# mean 0.02 / 5 = 0.004; deviations .096 -.054 .016 -.104 .046, squares sum 0.02532, /4 = 0.00633
# downside: mean(0, .0025, 0, .01, 0) = 0.0025 -> 0.05
# sorted: -0.10 -0.05 0.02 0.05 0.10; 5% quantile at position 0.2: -0.10 + 0.2 * 0.05 = -0.09
R = [0.10, -0.05, 0.02, -0.10, 0.05]


def test_return_and_risk_metrics() -> None:
    m = performance_metrics(pd.Series(R), periods_per_year=252)
    assert list(m) == list(METRIC_NAMES)
    assert m["total_return"] == pytest.approx(0.0072755, abs=1e-12)
    assert m["annual_return"] == pytest.approx(1.0072755 ** (252 / 5) - 1, rel=1e-12)
    assert m["volatility"] == pytest.approx(math.sqrt(0.00633) * math.sqrt(252), rel=1e-12)
    assert m["sharpe"] == pytest.approx(0.004 / math.sqrt(0.00633) * math.sqrt(252), rel=1e-12)
    assert m["sortino"] == pytest.approx(0.004 / 0.05 * math.sqrt(252), rel=1e-12)
    assert m["max_drawdown"] == pytest.approx(-0.1279, abs=1e-12)
    assert m["max_drawdown_duration"] == 4
    assert m["calmar"] == pytest.approx(m["annual_return"] / 0.1279, rel=1e-12)
    assert m["var_95"] == pytest.approx(-0.09, abs=1e-12)
    assert m["cvar_95"] == pytest.approx(-0.10, abs=1e-12)


def test_drawdown_duration_ends_at_recovery() -> None:
    # wealth 1.1, 0.99, 0.99, 1.188, 1.17612: under water on bars 1-2 (2), recovered on 3, then 1.
    m = performance_metrics(np.array([0.1, -0.1, 0.0, 0.2, -0.01]))
    assert m["max_drawdown"] == pytest.approx(-0.1, abs=1e-12)
    assert m["max_drawdown_duration"] == 2


def test_a_loss_on_the_first_bar_is_a_drawdown() -> None:
    m = performance_metrics(np.array([-0.2, 0.1]))
    assert m["max_drawdown"] == pytest.approx(-0.2)
    assert m["max_drawdown_duration"] == 2  # 0.8, 0.88: never back to 1


def test_trade_metrics_turnover_and_exposure() -> None:
    # trade returns 0.1, -0.05, 0.2, 0.0: 2 winners of 4 (0 is not a win); PF = 0.3 / 0.05 = 6.
    trades = pd.DataFrame({"return": [0.1, -0.05, 0.2, 0.0]})
    # held 0, 1, 1, 0, -0.5: traded weight 0, 1, 0, 1, 0.5 -> mean 0.5 -> 0.5 * 252 = 126 a year;
    # a position on 3 bars of 5.
    held = pd.Series([0, 1, 1, 0, -0.5])
    m = performance_metrics(np.zeros(5), positions=held, trades=trades, periods_per_year=252)
    assert m["win_rate"] == 0.5
    assert m["profit_factor"] == pytest.approx(6.0)
    assert m["trades"] == 4
    assert m["turnover"] == pytest.approx(126.0)
    assert m["exposure"] == pytest.approx(0.6)


def test_portfolio_turnover_sums_assets() -> None:
    held = pd.DataFrame({"a": [0.5, 0.5, 0.0], "b": [0.0, -0.5, -0.5]})  # traded 0.5, 0.5, 0.5
    m = performance_metrics(np.zeros(3), positions=held, periods_per_year=12)
    assert m["turnover"] == pytest.approx(0.5 * 12)
    assert m["exposure"] == 1.0


def test_edge_cases_do_not_crash() -> None:
    flat = performance_metrics(np.zeros(10), periods_per_year=252)
    assert flat["total_return"] == 0.0 and flat["volatility"] == 0.0 and flat["max_drawdown"] == 0.0
    assert math.isnan(flat["sharpe"]) and math.isnan(flat["sortino"]) and math.isnan(flat["calmar"])
    assert math.isnan(flat["win_rate"]) and math.isnan(flat["profit_factor"]) and flat["trades"] == 0
    assert flat["max_drawdown_duration"] == 0 and flat["exposure"] == 0.0
    constant = performance_metrics(np.full(50, 0.001))
    assert constant["volatility"] == 0.0 and math.isnan(constant["sharpe"])
    winners = performance_metrics(np.zeros(3), trades=pd.DataFrame({"return": [0.1, 0.2]}))
    assert winners["profit_factor"] == math.inf and winners["win_rate"] == 1.0
    empty = performance_metrics(np.empty(0))
    assert math.isnan(empty["total_return"]) and empty["trades"] == 0
    one = performance_metrics(np.array([0.01]))
    assert math.isnan(one["sharpe"]) and one["total_return"] == pytest.approx(0.01)
    ruined = performance_metrics(np.array([-1.0, 0.0]))
    assert ruined["annual_return"] == -1.0 and ruined["max_drawdown"] == -1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="periods_per_year"):
        performance_metrics(np.zeros(3), periods_per_year=0)
    with pytest.raises(ValueError, match="fillna"):
        performance_metrics(np.array([0.1, np.nan]))
    with pytest.raises(ValueError, match="same bars"):
        performance_metrics(np.zeros(3), positions=np.zeros(4))
