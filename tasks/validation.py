"""Prefect tasks of the validate flow: list the stored series, then re-validate one at a time
(:mod:`expectations.revalidation` does the work; screening and quarantine are
:mod:`expectations.screening` and :mod:`expectations.quarantine`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NONE

from config.settings import Settings
from expectations.revalidation import (
    ValidateOutcome,
    ValidateTarget,
    revalidate_series,
    validation_targets,
)
from tasks.store import store_for


@task(name="plan-validate", cache_policy=NONE)
def plan_validate(
    symbols: list[str], timeframe: str | None, batch_id: str, settings: Settings
) -> list[ValidateTarget]:
    """The stored series to re-validate, filtered by symbol and timeframe
    (:func:`expectations.revalidation.validation_targets`)."""
    return validation_targets(store_for(settings), symbols, timeframe, batch_id)


@task(name="validate-series", task_run_name="validate-{target.symbol}-{target.timeframe}", cache_policy=NONE)
def validate_series(target: ValidateTarget, settings: Settings) -> ValidateOutcome:
    """Re-run the ``bars`` suite on a stored series; failing bars move to quarantine atomically
    (:func:`expectations.revalidation.revalidate_series`)."""
    return revalidate_series(store_for(settings), settings, target)
