"""The ``ingest`` flow: registry sync, then one mapped task per series.

``python -m flows.ingest`` loads every enabled asset of the registry; the fields of
:class:`config.flows.IngestConfig` choose otherwise (``--source csv --path FILE --symbols X``,
see ``--help``).
"""

from __future__ import annotations

from prefect import flow, unmapped

from config.flows import IngestConfig
from config.settings import Settings, get_settings
from flows._main import run_from_argv
from ingestion.ingest import IngestSummary
from tasks.data import collect_outcomes, ingest_series, plan_ingest
from tasks.runners import fanned_out


@flow(name="ingest", validate_parameters=False)
def ingest(config: IngestConfig | None = None, settings: Settings | None = None) -> IngestSummary:
    """Load market data into the bar store, resuming each series from its watermark."""
    config = config or IngestConfig()
    settings = settings or get_settings()
    targets = plan_ingest(config, settings)
    futures = ingest_series.map(targets, settings=unmapped(settings))
    return collect_outcomes(config.batch_id, targets, list(futures))


if __name__ == "__main__":
    run_from_argv(fanned_out(ingest, get_settings()), IngestConfig)
