"""FKS backtests: target weights in, equity, trades and metrics out.

``run(prices, positions, costs=Costs(), execution="next_open")`` simulates one asset or a
portfolio of target weights with costs, filling at the next bar's open by default;
:mod:`backtest.engine` documents the model and :mod:`backtest.metrics` every metric.
"""

from backtest.engine import BacktestResult, Costs, run

__all__ = ["BacktestResult", "Costs", "run"]
