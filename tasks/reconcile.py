"""Prefect tasks of reconciliation: list the series of online assets, then re-read each one's
provisional bars from its primary (:mod:`ingestion.reconcile` does the work)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from config.backfill import ReconcileConfig
from config.settings import Settings
from ingestion.reconcile import ReconcileOutcome, reconcile_series, reconcile_targets
from storage.registry import sync_asset_registry
from tasks.providers import manager_for
from tasks.store import store_for

__all__ = ["plan_reconcile", "reconcile_bars"]


@task(name="plan-reconcile", cache_policy=NONE)
def plan_reconcile(config: ReconcileConfig, settings: Settings) -> list[tuple[str, str]]:
    """Sync the asset registry and list ``(symbol, timeframe)`` of the stored online series to heal."""
    from config.assets import load_asset_specs

    engine = store_for(settings)
    with engine.begin() as conn:
        sync_asset_registry(conn, load_asset_specs(settings.assets_file))
    return reconcile_targets(engine, list(config.symbols), config.timeframe)


@task(name="reconcile-series", task_run_name="reconcile-{symbol}-{timeframe}", cache_policy=NONE)
def reconcile_bars(symbol: str, timeframe: str, settings: Settings, batch_id: str) -> ReconcileOutcome:
    """Re-read one series' provisional bars from its primary and replace those that differ
    (:func:`ingestion.reconcile.reconcile_series`)."""
    return reconcile_series(
        store_for(settings),
        settings,
        symbol,
        timeframe,
        manager=lambda: manager_for(settings, scope=batch_id),
        batch_id=batch_id,
    )
