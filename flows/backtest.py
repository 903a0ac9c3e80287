"""The ``backtest`` flow: a registered model version out of sample, net of costs, with its tearsheet."""

from __future__ import annotations

from prefect import flow

from backtest.evaluate import BacktestSummary
from config.backtest import BacktestConfig
from config.settings import Settings, get_settings
from tasks.backtest import backtest_model


@flow(name="backtest", validate_parameters=False)
def backtest(config: BacktestConfig | None = None, settings: Settings | None = None) -> BacktestSummary:
    """Backtest ``config.model`` (default ``fks-forecaster@challenger``) and write its tearsheet."""
    return backtest_model(config or BacktestConfig(), settings or get_settings())


if __name__ == "__main__":
    backtest()
