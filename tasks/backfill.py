"""Prefect tasks of the backfill: plan the chunks of each series, then work through them in order
(:mod:`ingestion.backfill` does the work).

Every task takes plain data; the series of one run share a provider manager got from
:func:`tasks.providers.manager_for` under the run's batch id, which the flow closes with
:func:`tasks.providers.release_managers` when the run ends.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from config.backfill import BackfillConfig
from config.settings import Settings
from ingestion.backfill import (
    BackfillOutcome,
    BackfillTarget,
    backfill_target,
    backfill_targets,
)
from tasks.providers import is_transient, manager_for
from tasks.store import store_for

__all__ = ["backfill_series", "plan_backfill"]


@task(name="plan-backfill", cache_policy=NONE)
def plan_backfill(config: BackfillConfig, settings: Settings) -> list[BackfillTarget]:
    """Sync the asset registry, then record each series' chunks and list those still to fetch
    (:func:`ingestion.backfill.backfill_targets`); logs the offline series left alone."""
    plan = backfill_targets(store_for(settings), settings, config)
    for symbol, timeframe in plan.left_alone:
        get_run_logger().info(
            "%s %s: no provider_symbols (an offline series), its holes are left alone", symbol, timeframe
        )
    return plan.targets


@task(
    name="backfill-series",
    task_run_name="backfill-{target.asset.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=[2, 10],
    retry_condition_fn=is_transient,
    cache_policy=NONE,
)
def backfill_series(target: BackfillTarget, settings: Settings) -> BackfillOutcome:
    """Work through one series' chunks in time order, each stored with its mark atomically
    (:func:`ingestion.backfill.backfill_target`), fetching through the run's provider manager."""
    return backfill_target(
        store_for(settings), settings, target, manager=lambda: manager_for(settings, scope=target.batch_id)
    )
