"""The main job, ``fks pipeline``: every stage, in order, on the shipped sample data."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from config.flows import PipelineConfig
from config.settings import Settings, get_settings
from flows.features import features
from flows.ingest import ingest
from flows.train_forecaster import train_forecaster
from tasks.data import IngestSummary
from tasks.features import FeaturesSummary
from tasks.models import TrainingSummary


class PipelineSummary(BaseModel):
    """What each stage of the pipeline produced."""

    ingest: IngestSummary
    features: FeaturesSummary
    forecaster: TrainingSummary


@flow(name="pipeline", validate_parameters=False)
def pipeline(config: PipelineConfig | None = None, settings: Settings | None = None) -> PipelineSummary:
    """Run the stages that exist so far: ingest (with validation), features, forecaster training.

    Backtest and promotion join as they land.
    """
    config = config or PipelineConfig()
    settings = settings or get_settings()
    ingested = ingest(config.ingest, settings)
    built = features(config.features, settings)
    trained = train_forecaster(config.forecaster, settings)
    return PipelineSummary(ingest=ingested, features=built, forecaster=trained)


if __name__ == "__main__":
    pipeline()
