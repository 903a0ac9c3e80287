"""The ``backfill`` flow: page through history in chunks, resumable from the chunks already done.

``python -m flows.backfill --symbols BTC-USD --timeframe 1m --start 2024-01-01 --end 2024-02-01``
runs it without the CLI (the fields of :class:`config.backfill.BackfillConfig`, see ``--help``).
"""

from __future__ import annotations

from prefect import flow, unmapped

from config.backfill import BackfillConfig
from config.settings import Settings, get_settings
from flows._main import run_from_argv
from ingestion.backfill import BackfillSummary, backfill_summary
from tasks.backfill import backfill_series, plan_backfill
from tasks.providers import release_managers
from tasks.runners import fanned_out


@flow(name="backfill", validate_parameters=False)
def backfill(config: BackfillConfig, settings: Settings | None = None) -> BackfillSummary:
    """Fetch (or derive) every chunk still missing of each series, one mapped task per series (each
    series' chunks in time order).

    The series that run in one process share one provider manager (closed when the run ends), so
    rate limits, breakers and budgets span them. Raises :class:`ingestion.backfill.BackfillIncomplete`
    after the run when some chunk could not be fetched from any provider (everything else is stored).
    """
    settings = settings or get_settings()
    targets = plan_backfill(config, settings)
    try:
        futures = backfill_series.map(targets, settings=unmapped(settings))
        futures.wait()
        outcomes = futures.result()
    finally:
        release_managers(config.batch_id)
    return backfill_summary(config.batch_id, outcomes)


if __name__ == "__main__":
    run_from_argv(fanned_out(backfill, get_settings()), BackfillConfig)
