"""Prefect tasks of the training stage: train, tune and record a model (:mod:`models.trainer`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from backtest.evaluate import strategy_metrics
from config.models import ForecasterConfig
from config.settings import Settings
from ingestion.features import features_root
from models.forecaster.service import TrainingSummary, train_and_record
from tasks.store import store_for

__all__ = ["train_forecaster_task"]


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
