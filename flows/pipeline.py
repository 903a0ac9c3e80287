"""The main job, ``fks pipeline``: every stage, in order, on the shipped sample data, then the
allocator stage on its universe (offline: the seeded synthetic market's eight daily equities).

Each stage is announced to the listeners of :func:`watching_stages` as it begins (the ``fks
pipeline`` display); listeners only watch, they change nothing the stages compute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prefect import flow
from pydantic import BaseModel

from backtest.evaluate import BacktestSummary
from config.flows import PipelineConfig
from config.settings import Settings, get_settings
from flows.backtest import backtest
from flows.features import features
from flows.ingest import ingest
from flows.promote import promote
from flows.train_allocator import train_allocator
from flows.train_forecaster import train_forecaster
from ingestion.features import FeaturesSummary
from ingestion.ingest import IngestSummary
from models.allocator.service import AllocatorSummary
from models.forecaster.service import TrainingSummary
from models.promotion import PromotionSummary
from tasks.runners import fanned_out

STAGES: tuple[str, ...] = (
    "ingest",
    "features",
    "train forecaster",
    "backtest",
    "gate",
    "allocator ingest",
    "train allocator",
)
"""The stages in the order they run (``ingest`` validates each series as it stores it; the two
allocator stages run when ``config.allocator.enabled``)."""

StageListener = Callable[[str], None]
"""Called with a stage's name (one of :data:`STAGES`) as the stage begins."""

_listeners: list[StageListener] = []


@contextmanager
def watching_stages(listener: StageListener) -> Iterator[None]:
    """Call ``listener(stage)`` as each stage of the pipelines run inside the block begins."""
    _listeners.append(listener)
    try:
        yield
    finally:
        _listeners.remove(listener)


def _begin(stage: str) -> None:
    for listener in list(_listeners):
        try:
            listener(stage)
        except Exception:  # a display must not fail the pipeline
            logging.getLogger(__name__).debug("stage listener failed", exc_info=True)


class PipelineSummary(BaseModel):
    """What each stage of the pipeline produced."""

    ingest: IngestSummary
    features: FeaturesSummary
    forecaster: TrainingSummary
    backtest: BacktestSummary
    promotion: PromotionSummary
    allocator_ingest: IngestSummary | None = None
    allocator: AllocatorSummary | None = None


@flow(name="pipeline", validate_parameters=False)
def pipeline(config: PipelineConfig | None = None, settings: Settings | None = None) -> PipelineSummary:
    """Every stage: ingest (with validation), features, forecaster training, backtest, promotion gate;
    then the allocator's universe ingested (with validation) and the allocator trained on it."""
    config = config or PipelineConfig()
    settings = settings or get_settings()
    _begin("ingest")
    ingested = fanned_out(ingest, settings)(config.ingest, settings)
    _begin("features")
    built = fanned_out(features, settings)(config.features, settings)
    _begin("train forecaster")
    trained = train_forecaster(config.forecaster, settings)
    _begin("backtest")
    tested = backtest(config.backtest, settings)
    _begin("gate")
    decided = promote(config.promote, settings)
    universe, allocator = None, None
    if config.allocator.enabled:
        _begin("allocator ingest")
        universe = fanned_out(ingest, settings)(config.allocator.ingest, settings)
        _begin("train allocator")
        allocator = train_allocator(config.allocator.train, settings, config.allocator.source)
    return PipelineSummary(
        ingest=ingested,
        features=built,
        forecaster=trained,
        backtest=tested,
        promotion=decided,
        allocator_ingest=universe,
        allocator=allocator,
    )


if __name__ == "__main__":
    pipeline()
