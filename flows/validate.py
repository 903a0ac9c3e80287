"""The ``validate`` flow: re-run the ``bars`` suite over stored series.

``python -m flows.validate --symbols SPX`` runs it without the CLI (see ``--help``).
"""

from __future__ import annotations

from prefect import flow, unmapped

from config.flows import ValidateConfig
from config.settings import Settings, get_settings
from expectations.revalidation import ValidateSummary
from flows._main import run_from_argv
from tasks.runners import fanned_out
from tasks.validation import plan_validate, validate_series


@flow(name="validate", validate_parameters=False)
def validate(config: ValidateConfig | None = None, settings: Settings | None = None) -> ValidateSummary:
    """Re-validate stored bars; bars that now fail move to quarantine with their reasons."""
    config = config or ValidateConfig()
    settings = settings or get_settings()
    targets = plan_validate(config.symbols, config.timeframe, config.batch_id, settings)
    futures = validate_series.map(targets, settings=unmapped(settings))
    return ValidateSummary(batch_id=config.batch_id, outcomes=[f.result() for f in futures])


if __name__ == "__main__":
    run_from_argv(fanned_out(validate, get_settings()), ValidateConfig)
