"""The task runner that fans a flow's per-symbol tasks out, chosen by settings.

``FKS_TASK_RUNNER`` picks it: ``sequential`` (one task at a time, in this process), ``threads``
(Prefect's thread pool, the default) or ``dask`` (prefect-dask's ``DaskTaskRunner`` as
:class:`tasks.dask_runner.FanOutDaskTaskRunner`, which spares each task run the settings and API
clients Prefect would make again: worker processes of a temporary ``LocalCluster`` of
``FKS_DASK_WORKERS`` processes with one thread each, or the cluster behind ``FKS_DASK_ADDRESS``).
Entry points apply it with :func:`fanned_out` (``flow.with_options(task_runner=...)``); results
do not depend on the runner, because every mapped task writes its own series with idempotent
upserts and the flows gather results in the order of their targets, not of completion.
"""

from __future__ import annotations

from typing import Any, TypeVar

from prefect import Flow
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from config.settings import Settings

__all__ = ["fanned_out", "task_runner_for"]

F = TypeVar("F", bound=Flow[Any, Any])


def task_runner_for(settings: Settings) -> TaskRunner[Any]:
    """A new task runner for ``settings.task_runner`` (nothing starts until a flow enters it; a
    Dask ``LocalCluster`` starts at the first submitted task and stops with the flow run).

    Raises:
        ImportError: for ``dask`` when prefect-dask is not installed (``pip install prefect-dask``).
    """
    if settings.task_runner == "sequential":
        return ThreadPoolTaskRunner(max_workers=1)
    if settings.task_runner == "threads":
        return ThreadPoolTaskRunner()
    try:
        from tasks.dask_runner import FanOutDaskTaskRunner
    except ImportError as exc:  # pragma: no cover - a dependency of FKS
        raise ImportError("FKS_TASK_RUNNER=dask needs prefect-dask: pip install prefect-dask") from exc
    if settings.dask_address:
        return FanOutDaskTaskRunner(address=settings.dask_address)
    return FanOutDaskTaskRunner(
        cluster_kwargs={
            "n_workers": settings.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            # no dashboard: a fixed port (8787) would clash between runs and users of one machine
            "dashboard_address": None,
        }
    )


def fanned_out(flow: F, settings: Settings) -> F:
    """``flow`` running its mapped tasks on :func:`task_runner_for` ``(settings)``."""
    return flow.with_options(task_runner=task_runner_for(settings))  # type: ignore[return-value]
