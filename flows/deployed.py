"""The flows as the deployments run them (the entrypoints of ``prefect.yaml`` and ``fks deploy``).

Each is a flow of its own module with the options a scheduled run needs and an interactive one does
not: its parameters validated into the flow's config model (a deployment's parameters arrive as
JSON), its result persisted (``PREFECT_LOCAL_STORAGE_PATH``: ``fks worker`` points it at the
lake), flow-level retries where a later attempt can succeed (the tasks retry with backoff first),
and a webhook notification when a run fails or crashes (:func:`tasks.notify.notify_run_state`).
The flow names are unchanged, so a deployment ``ingest/1d-xnys`` shows beside the ``ingest`` runs
of ``fks ingest``.
"""

from __future__ import annotations

from flows.backfill import backfill as _backfill
from flows.check_retraining import check_retraining as _check_retraining
from flows.execute import execute as _execute
from flows.ingest import ingest as _ingest
from flows.retrain import retrain as _retrain
from flows.validate import validate as _validate
from tasks.notify import notify_run_state

__all__ = ["backfill", "check_retraining", "execute", "ingest", "retrain", "validate"]

_HOOKS = {"on_failure": [notify_run_state], "on_crashed": [notify_run_state]}

ingest = _ingest.with_options(
    validate_parameters=True, persist_result=True, retries=1, retry_delay_seconds=120, **_HOOKS
)
"""Scheduled ingestion: one more attempt 2 minutes after a failed run (each series' fetch already
retried with backoff, and the provider manager failed over)."""

backfill = _backfill.with_options(
    validate_parameters=True, persist_result=True, retries=1, retry_delay_seconds=600, **_HOOKS
)
"""Nightly gap repair: one more attempt 10 minutes later for chunks no provider could give."""

validate = _validate.with_options(validate_parameters=True, persist_result=True, **_HOOKS)
"""Nightly re-validation (deterministic: no retry)."""

retrain = _retrain.with_options(validate_parameters=True, persist_result=True, **_HOOKS)
"""Retraining, evaluation and gate (deterministic and long: no retry)."""

check_retraining = _check_retraining.with_options(validate_parameters=True, persist_result=True, **_HOOKS)
"""The retraining check (runs again at the next schedule)."""

execute = _execute.with_options(validate_parameters=True, persist_result=True, **_HOOKS)
"""The paper desk's cycle (idempotent; the next schedule is its retry)."""
