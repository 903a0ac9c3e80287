"""The ``retrain`` flow: train a model family, evaluate the new version net of costs, run the
promotion gate and tell the webhooks its decision. The weekly retraining deployments and the
retraining check run it (``config/deployments.py``)."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from backtest.evaluate import BacktestSummary
from config.retraining import RetrainConfig
from config.settings import Settings, get_settings
from flows.backtest import backtest
from flows.promote import promote
from flows.train_allocator import train_allocator
from flows.train_forecaster import train_forecaster
from models.allocator.service import AllocatorSummary
from models.forecaster.service import TrainingSummary
from models.promotion import PromotionSummary
from tasks.notify import notify_gate


class RetrainSummary(BaseModel):
    """What a retraining produced: the training (one of the two families), the backtest of the new
    forecaster, the gate's decision (None without ``evaluate``)."""

    family: str
    forecaster: TrainingSummary | None = None
    allocator: AllocatorSummary | None = None
    backtest: BacktestSummary | None = None
    promotion: PromotionSummary | None = None


@flow(name="retrain", validate_parameters=False)
def retrain(config: RetrainConfig | None = None, settings: Settings | None = None) -> RetrainSummary:
    """Train ``config.family``'s model (new version at ``@challenger``); with ``config.evaluate``,
    backtest it (the forecaster), gate it and notify the decision."""
    config = config or RetrainConfig()
    settings = settings or get_settings()
    summary = RetrainSummary(family=config.family)
    if config.family == "forecaster":
        summary.forecaster = train_forecaster(config.forecaster, settings)
    else:
        summary.allocator = train_allocator(config.allocator, settings, config.source)
    if config.evaluate and config.backtest is not None and config.promote is not None:
        if config.family == "forecaster":
            summary.backtest = backtest(config.backtest, settings)
        summary.promotion = promote(config.promote, settings)
        notify_gate(summary.promotion, settings)
    return summary


if __name__ == "__main__":
    retrain()
