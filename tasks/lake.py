"""Prefect tasks of the lake: plan which series to move, then export or import one series at a time
(:mod:`ingestion.lake` does the work); a lake that cannot be reached is retried."""

from __future__ import annotations

from prefect import Task, task
from prefect.cache_policies import NONE
from prefect.client.schemas.objects import TaskRun
from prefect.states import State

from config.lake import LakeExportConfig, LakeImportConfig
from config.settings import Settings
from ingestion.lake import (
    LakeExportOutcome,
    LakeImportOutcome,
    LakeImportPlan,
    LakeTarget,
    export_series_to_lake,
    import_series_from_lake,
    lake_export_targets,
    lake_for,
    lake_import_targets,
)
from storage.lake import LakeUnreachable
from tasks.store import store_for


def _is_transient(task: Task[..., object], task_run: TaskRun, state: State[object]) -> bool:
    """Retry only when the lake's storage could not be reached."""
    try:
        state.result()
    except LakeUnreachable:
        return True
    except Exception:
        return False
    return False


@task(name="plan-lake-export", cache_policy=NONE)
def plan_lake_export(config: LakeExportConfig, settings: Settings) -> list[LakeTarget]:
    """The stored series to export (:func:`ingestion.lake.lake_export_targets`)."""
    return lake_export_targets(store_for(settings), settings, config)


@task(
    name="export-series",
    task_run_name="export-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NONE,
)
def export_lake_series(target: LakeTarget, settings: Settings) -> LakeExportOutcome:
    """Export one stored series to the lake (:func:`ingestion.lake.export_series_to_lake`)."""
    return export_series_to_lake(store_for(settings), lake_for(settings), target)


@task(name="plan-lake-import", cache_policy=NONE)
def plan_lake_import(config: LakeImportConfig, settings: Settings) -> LakeImportPlan:
    """Sync the asset registry and list the lake's series to import
    (:func:`ingestion.lake.lake_import_targets`). The store is created and migrated here, once,
    before the series import in parallel."""
    return lake_import_targets(store_for(settings), settings, config)


@task(
    name="import-series",
    task_run_name="import-{target.symbol}-{target.timeframe}",
    retries=2,
    retry_delay_seconds=5,
    retry_condition_fn=_is_transient,
    cache_policy=NONE,
)
def import_lake_series(target: LakeTarget, settings: Settings) -> LakeImportOutcome:
    """Screen one series of the lake with the ``bars`` suite and store it in one transaction
    (:func:`ingestion.lake.import_series_from_lake`)."""
    return import_series_from_lake(store_for(settings), settings, lake_for(settings), target)
