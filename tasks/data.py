"""Prefect tasks of the data stage: plan an ingestion, then fetch and store one series at a time
(:mod:`ingestion.ingest` does the work)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture

from config.flows import IngestConfig
from config.settings import Settings
from ingestion.ingest import (
    IngestOutcome,
    IngestSummary,
    IngestTarget,
    failed_outcome,
    ingest_summary,
    ingest_target,
    ingest_targets,
)
from tasks.providers import is_transient, manager_for
from tasks.store import store_for

__all__ = ["collect_outcomes", "ingest_series", "plan_ingest"]


@task(name="plan-ingest", cache_policy=NONE)
def plan_ingest(config: IngestConfig, settings: Settings) -> list[IngestTarget]:
    """Sync the asset registry from its YAML file and list the series to ingest
    (:func:`ingestion.ingest.ingest_targets`)."""
    return ingest_targets(store_for(settings), settings, config)


@task(
    name="ingest-series",
    task_run_name="ingest-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=is_transient,
    cache_policy=NONE,
)
def ingest_series(target: IngestTarget, settings: Settings) -> IngestOutcome:
    """Fetch one series, validate it, and store it in one transaction; record the run
    (:func:`ingestion.ingest.ingest_target`, online series through :func:`tasks.providers.manager_for`)."""
    return ingest_target(store_for(settings), settings, target, manager=lambda: manager_for(settings))


def collect_outcomes(
    batch_id: str, targets: list[IngestTarget], futures: list[PrefectFuture[IngestOutcome]]
) -> IngestSummary:
    """Wait for every series and build the summary.

    Raises:
        ingestion.ingest.IngestFailed: after all series finished, when any of them failed (the
            summary rides on it).
    """
    outcomes = []
    for target, future in zip(targets, futures, strict=True):
        future.wait()
        try:
            outcomes.append(future.result())
        except Exception as exc:
            outcomes.append(failed_outcome(target, exc))
    return ingest_summary(batch_id, outcomes)
