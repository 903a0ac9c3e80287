"""FKS backtests: target weights in, equity, trades and metrics out.

``run(prices, positions, costs=Costs(), execution="next_open")`` simulates one asset or a
portfolio of target weights with costs, filling at the next bar's open by default;
:mod:`backtest.engine` documents the model and :mod:`backtest.metrics` every metric.

Above the engine sit the services that evaluate registered models (imported on first use):
:func:`run_backtest` (``fks backtest``: a version out of sample against buy and hold and its
baselines, with a tearsheet; :mod:`backtest.evaluate`) and :func:`run_gate` (``fks promote``: the
promotion gate's backtests and decision; :mod:`backtest.promotion`); for the RL allocator
:func:`evaluate_allocation`, :func:`run_allocation_backtest` and :func:`run_allocation_gate`
(:mod:`backtest.allocation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backtest.engine import BacktestResult, Costs, run
from config.exports import lazy_exports

if TYPE_CHECKING:
    from backtest.allocation import evaluate_allocation, run_allocation_backtest, run_allocation_gate
    from backtest.evaluate import BacktestSummary, evaluate_model, run_backtest, strategy_metrics
    from backtest.promotion import run_gate

_SERVICES: dict[str, str] = {
    "evaluate_allocation": "backtest.allocation",
    "run_allocation_backtest": "backtest.allocation",
    "run_allocation_gate": "backtest.allocation",
    "BacktestSummary": "backtest.evaluate",
    "evaluate_model": "backtest.evaluate",
    "run_backtest": "backtest.evaluate",
    "strategy_metrics": "backtest.evaluate",
    "run_gate": "backtest.promotion",
}

__all__ = [
    "BacktestResult",
    "BacktestSummary",
    "Costs",
    "evaluate_allocation",
    "evaluate_model",
    "run",
    "run_allocation_backtest",
    "run_allocation_gate",
    "run_backtest",
    "run_gate",
    "strategy_metrics",
]


__getattr__ = lazy_exports(__name__, _SERVICES)
