"""The ``reconcile`` flow: heal provisional bars (written by a fallback provider while an asset's
primary was down) from the primary, recording each replacement in ``bar_replacements``.

``python -m flows.reconcile --symbols BTC-USD`` runs it without the CLI (the fields of
:class:`config.backfill.ReconcileConfig`); schedule it (or ``fks reconcile``) to heal on its own.
"""

from __future__ import annotations

from prefect import flow

from config.backfill import ReconcileConfig
from config.settings import Settings, get_settings
from flows._main import run_from_argv
from ingestion.reconcile import ReconcileOutcome
from tasks.providers import release_managers
from tasks.reconcile import plan_reconcile, reconcile_bars


@flow(name="reconcile", validate_parameters=False)
def reconcile(config: ReconcileConfig, settings: Settings | None = None) -> list[ReconcileOutcome]:
    """Re-read the provisional bars of each stored online series from its primary, one series after
    the other (sharing one provider manager, closed when the run ends)."""
    settings = settings or get_settings()
    targets = plan_reconcile(config, settings)
    try:
        return [reconcile_bars(symbol, tf, settings, config.batch_id) for symbol, tf in targets]
    finally:
        release_managers(config.batch_id)


if __name__ == "__main__":
    run_from_argv(reconcile, ReconcileConfig)
