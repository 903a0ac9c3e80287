"""The main job, ``fks pipeline``: every stage, in order, on the shipped sample data."""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from config.flows import PipelineConfig
from config.settings import Settings, get_settings
from flows.ingest import ingest
from tasks.data import IngestSummary


class PipelineSummary(BaseModel):
    """What each stage of the pipeline produced."""

    ingest: IngestSummary


@flow(name="pipeline", validate_parameters=False)
def pipeline(config: PipelineConfig | None = None, settings: Settings | None = None) -> PipelineSummary:
    """Run the stages that exist so far: ingest.

    Validation, features, training, backtest and promotion join as they land.
    """
    config = config or PipelineConfig()
    settings = settings or get_settings()
    return PipelineSummary(ingest=ingest(config.ingest, settings))


if __name__ == "__main__":
    pipeline()
