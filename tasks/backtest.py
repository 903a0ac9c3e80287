"""Prefect tasks of the evaluation stage: backtest a registered model version net of costs, report it
(:func:`backtest.evaluate.run_backtest`; an allocator:
:func:`backtest.allocation.run_allocation_backtest`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from backtest.evaluate import BacktestSummary, run_backtest
from config.backtest import BacktestConfig
from config.models import AllocatorConfig
from config.settings import Settings
from tasks.store import store_for

__all__ = ["backtest_model"]


@task(name="backtest-model", task_run_name="backtest-{config.model}", cache_policy=NONE)
def backtest_model(config: BacktestConfig, settings: Settings) -> BacktestSummary:
    """Backtest a registered model version on its out-of-sample window against buy and hold and the
    baselines, write the tearsheet under the data dir and log it on the model's MLflow run (an
    allocator: its universe walked forward through its pyfunc beside the allocation baselines).

    Raises:
        InputError: an unknown model, alias or version, or no stored bars of its series.
    """
    if config.family == AllocatorConfig.family:
        from backtest.allocation import run_allocation_backtest  # imports PyTorch: only when needed

        return run_allocation_backtest(config, settings, engine=store_for(settings))
    return run_backtest(config, settings, engine=store_for(settings))
