"""Prefect tasks of the training stage: train, tune and record a model (:mod:`models.trainer`,
:mod:`models.allocator.service`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from backtest.evaluate import strategy_metrics
from config.models import AllocatorConfig, ForecasterConfig
from config.settings import Settings
from ingestion.features import features_root
from models.allocator.service import AllocatorSummary
from models.forecaster.service import TrainingSummary, train_and_record
from tasks.store import store_for

__all__ = ["train_allocator_task", "train_forecaster_task"]


@task(
    name="train-forecaster",
    task_run_name="train-forecaster-{config.symbol}-{config.timeframe}",
    cache_policy=NONE,
)
def train_forecaster_task(config: ForecasterConfig, settings: Settings) -> TrainingSummary:
    """Train the LSTM forecaster on the stored (validated) bars of ``config.symbol`` and record it
    (:func:`models.forecaster.service.train_and_record`; its test forecasts traded net of costs).

    Raises:
        InputError: no stored bars, an unknown feature set, or too little history.
    """
    return train_and_record(
        config,
        settings,
        engine=store_for(settings),
        features_root=features_root(settings),
        evaluate=strategy_metrics,
    )


@task(
    name="train-allocator",
    task_run_name="train-allocator-{config.timeframe}",
    cache_policy=NONE,
)
def train_allocator_task(
    config: AllocatorConfig, settings: Settings, source: str = "stored bars"
) -> AllocatorSummary:
    """Train the RL allocator on the stored bars of ``config.symbols``, backtest its test span beside
    the baselines net of costs, record and register it
    (:func:`models.allocator.service.train_and_record` with :func:`backtest.allocation.evaluate_allocation`).

    Raises:
        InputError: a symbol without stored bars, an unknown feature set, or too little history.
    """
    from backtest.allocation import evaluate_allocation
    from models.allocator.service import train_and_record as train_and_record_allocator

    return train_and_record_allocator(
        config, settings, engine=store_for(settings), evaluate=evaluate_allocation, source=source
    )
