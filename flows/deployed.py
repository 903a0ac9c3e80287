"""The flows as the deployments run them (the entrypoints of ``prefect.yaml`` and ``fks deploy``:
``flows.deployed:<name>``).

Each is a flow of its own module with the options a scheduled run needs and an interactive one does
not: its parameters validated into the flow's config model (a deployment's parameters arrive as
JSON), its result persisted (``PREFECT_LOCAL_STORAGE_PATH``: ``fks worker`` points it at the
lake), flow-level retries where a later attempt can succeed (the tasks retry with backoff first),
a webhook notification when a run fails or crashes (:func:`tasks.notify.notify_run_state`: only
where the server has no ``fks: flow run failed or crashed`` automation, which ``fks deploy --apply``
creates and which then sends it), and
for the flows that map one task per series, the task runner of ``FKS_TASK_RUNNER``
(:func:`tasks.runners.fanned_out`, e.g. Dask).
The flow names are unchanged, so a run of ``ingest/1d-xnys`` shows beside the ``ingest`` runs of
``fks ingest``.

The flows are built on first access (a module ``__getattr__``): an ingestion run imports the
ingestion flow only, not TensorFlow and the training stack.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

__all__ = ["FLOWS", "deployed_flow"]

_OPTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    # one more attempt 2 minutes after a failed run (each series' fetch already retried with
    # backoff, and the provider manager failed over)
    "ingest": ("flows.ingest", {"retries": 1, "retry_delay_seconds": 120}),
    # one more attempt 10 minutes later for chunks no provider could give
    "backfill": ("flows.backfill", {"retries": 1, "retry_delay_seconds": 600}),
    # deterministic: no retry
    "validate": ("flows.validate", {}),
    # a primary still down: the next night's run is the retry
    "reconcile": ("flows.reconcile", {}),
    # deterministic and long: no retry
    "retrain": ("flows.retrain", {}),
    # the next schedule is its retry
    "check_retraining": ("flows.check_retraining", {}),
    # idempotent; the next schedule is its retry
    "execute": ("flows.execute", {}),
}

_FANNED_OUT = frozenset({"ingest", "backfill", "validate"})
"""The flows that map one task per series: their tasks run on ``FKS_TASK_RUNNER``."""

FLOWS: tuple[str, ...] = tuple(_OPTIONS)
"""The names this module gives (``from flows.deployed import ingest``): each flow's own name."""


@cache
def deployed_flow(name: str) -> Any:
    """The deployed form of flow ``name`` (one of :data:`FLOWS`).

    Raises:
        AttributeError: an unknown name.
    """
    if name not in _OPTIONS:
        raise AttributeError(
            f"module 'flows.deployed' has no flow {name!r}; the flows are {', '.join(__all__)}"
        )
    from tasks.notify import notify_run_state

    module, options = _OPTIONS[name]
    flow = getattr(importlib.import_module(module), name)
    if name in _FANNED_OUT:  # per-series tasks on FKS_TASK_RUNNER (the worker's settings)
        from config.settings import get_settings
        from tasks.runners import fanned_out

        flow = fanned_out(flow, get_settings())
    return flow.with_options(
        validate_parameters=True,
        persist_result=True,
        on_failure=[notify_run_state],
        on_crashed=[notify_run_state],
        **options,
    )


def __getattr__(name: str) -> Any:
    if name.startswith("__"):
        raise AttributeError(name)
    return deployed_flow(name)
