"""Backtests of an allocator and its baselines on its test span, net of the same costs.

The agent's test episode and every baseline's targets (:mod:`models.allocator.baselines`) go
through :func:`backtest.run` on the same rows with ``execution="next_open"`` and the config's
costs, so every figure comes from one engine (the environment steps with the same kernel: the
agent's backtest equity is its episode's equity)::

    result = train_allocator(bars, feature_set, config)
    report = evaluate_allocation(result)
    report.metrics["agent"]["sharpe"], report.metrics["equal_weight"]["sharpe"]

Annualisation: bars per year observed over the whole aligned history (365 for a 24/7 daily
universe, about 252 for exchange days), the same for every strategy.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from backtest.engine import BacktestResult, Costs, run
from envs.data import PortfolioData
from models.allocator.report import ALLOCATION_METRICS, AllocationReport
from models.allocator.training import AGENT, AllocatorResult, costs_of

__all__ = ["backtest_targets", "evaluate_allocation", "periods_per_year"]


def periods_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year of ``index`` (observed: rows per 365.25 days).

    Raises:
        ValueError: fewer than two rows.
    """
    if len(index) < 2:
        raise ValueError("need at least two bars to count bars per year")
    days = (index[-1] - index[0]).total_seconds() / 86_400.0
    return (len(index) - 1) * 365.25 / days


def backtest_targets(
    data: PortfolioData, rows: slice, targets: pd.DataFrame, costs: Costs, *, ppy: float
) -> BacktestResult:
    """:func:`backtest.run` of ``targets`` (one column per asset, indexed by ``data.index[rows]``)
    on the universe's prices, filled at the next open, with a capital of 1."""
    return run(data.prices(rows), targets, costs, "next_open", initial_capital=1.0, periods_per_year=ppy)


def _figures(result: BacktestResult) -> dict[str, float]:
    out = {k: float(result.metrics[k]) for k in ALLOCATION_METRICS if k in result.metrics}
    out["costs_paid"] = float(result.costs_paid)
    return out


def _traded(result: BacktestResult) -> pd.Series:
    held = result.positions
    frame = held if isinstance(held, pd.DataFrame) else held.to_frame()
    return frame.diff().abs().sum(axis=1).fillna(frame.iloc[0].abs().sum())


def evaluate_allocation(
    result: AllocatorResult, extra: Mapping[str, pd.DataFrame] | None = None
) -> AllocationReport:
    """Backtest the agent's test targets and each baseline's on the test rows, net of costs.

    Args:
        result: a trained allocator (:func:`models.allocator.training.train_allocator`).
        extra: more strategies' targets on the same rows (one column per asset), e.g. the
            forecaster-driven allocation.

    Returns:
        The :class:`AllocationReport` (the agent first, then the baselines in order).

    Raises:
        ValueError: targets not on the test rows (see :func:`backtest.run`).
    """
    data, rows = result.data, result.test_rows
    costs = costs_of(result.config)
    ppy = periods_per_year(data.index)
    strategies = {AGENT: result.test.targets, **result.baselines, **dict(extra or {})}
    runs = {
        name: backtest_targets(data, rows, targets, costs, ppy=ppy) for name, targets in strategies.items()
    }
    agent = runs[AGENT]
    weights = agent.positions if isinstance(agent.positions, pd.DataFrame) else agent.positions.to_frame()
    return AllocationReport(
        metrics={name: _figures(r) for name, r in runs.items()},
        equity=pd.DataFrame({name: r.equity for name, r in runs.items()}),
        turnover=pd.DataFrame({name: _traded(r) for name, r in runs.items()}),
        weights=weights.astype(np.float64),
        periods_per_year=ppy,
    )
