"""What the test-span backtests of an allocator and its baselines produced (:class:`AllocationReport`).

:mod:`backtest.allocation` fills it (``models/`` never imports ``backtest/``); the allocator's
tracking (:mod:`models.allocator.tracking`) logs it and draws its plots.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

__all__ = ["ALLOCATION_METRICS", "AllocationReport"]

ALLOCATION_METRICS: tuple[str, ...] = (
    "total_return",
    "annual_return",
    "sharpe",
    "max_drawdown",
    "volatility",
    "turnover",
    "costs_paid",
    "trades",
)
"""The figures reported per strategy (see :mod:`backtest.metrics`; ``costs_paid`` in account
currency on a capital of 1, ``turnover`` in book turns a year)."""


@dataclass(frozen=True)
class AllocationReport:
    """The agent and every baseline traded over the same test rows, net of the same costs.

    Attributes:
        metrics: ``{strategy: {metric: value}}`` with :data:`ALLOCATION_METRICS`; the agent is
            ``"agent"``.
        equity: the account at each bar's close, one column per strategy (capital 1 at the start).
        turnover: traded weight per bar (``sum |w_t - w_(t-1)|`` of the held targets), one column
            per strategy.
        weights: the agent's held target weights per bar, one column per asset.
        periods_per_year: bars per year used for the annualised metrics.
    """

    metrics: dict[str, dict[str, float]]
    equity: pd.DataFrame
    turnover: pd.DataFrame
    weights: pd.DataFrame
    periods_per_year: float

    def best_baseline(self, metric: str = "sharpe") -> str:
        """The baseline (not the agent) with the highest ``metric``."""
        rivals = {k: v[metric] for k, v in self.metrics.items() if k != "agent"}
        return max(rivals, key=lambda k: rivals[k] if rivals[k] == rivals[k] else float("-inf"))
