"""The main job, ``fks pipeline``: every stage, in order, on the shipped sample data, then the
allocator stage on its universe (offline: the seeded synthetic market's eight daily equities)."""

from __future__ import annotations

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
    ingested = ingest(config.ingest, settings)
    built = features(config.features, settings)
    trained = train_forecaster(config.forecaster, settings)
    tested = backtest(config.backtest, settings)
    decided = promote(config.promote, settings)
    universe, allocator = None, None
    if config.allocator.enabled:
        universe = ingest(config.allocator.ingest, settings)
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
