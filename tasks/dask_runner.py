"""prefect-dask's ``DaskTaskRunner`` without the per-task work Prefect repeats for every task run.

prefect-dask ships each task run to a worker with a serialized copy of the flow run's context
(``prefect.context.serialize_context``), and the worker rebuilds it around the run
(``hydrated_context``). For every task that meant, in the flow's process, dumping Prefect's whole
settings model and the flow run's context again (~25 ms of CPU a task), and in the worker,
validating those settings again from their dump (pydantic-settings reads the environment and the
settings files again, ~22 ms), plus two new Prefect API clients, each loading the CA bundle into a
new SSL context (~20 ms each): ~75 ms of CPU a task in the worker against a ~0.19 s features task.

:class:`FanOutDaskTaskRunner` submits the same task runs (``prefect.task_engine.run_task_sync``,
with the same task run id, parameters, dependencies and context), but:

- in the flow's process, the flow run's part of the context is serialized once per flow run (it
  is the same for every task submitted from the flow's body), and Prefect's settings in it once
  per ``SettingsContext`` of the process (the same object across its flow runs); only the task's
  own asset context is made per task, as prefect-dask does;
- in a worker process (:func:`run_task_in_worker`), the settings are validated once per process and
  distinct serialized settings, and the Prefect API client is made once per worker thread and API
  (URL, key, auth string), kept open and reused by every task run of that thread, its connections
  to the API included;
- the Dask key is the task run's name and id instead of a hash of the arguments (Dask would
  tokenize the task, its parameters and the context for every submission);
- the ``LocalCluster`` it starts (no ``FKS_DASK_ADDRESS``) runs under :data:`CLUSTER_CONFIG`:
  its worker processes keep glibc's own memory trimming: Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``
  in every worker it spawns, so that memory goes back to the OS at once; for a features task,
  whose pandas frames and Great Expectations' metrics allocate and free a few MB again and again,
  that gave the pages back and faulted them in again (~115,000 minor page faults a task instead
  of ~1,500) and cost ~20 % more CPU a task (0.18-0.19 s against 0.15 s, 8 series, one worker).
  Workers then hold on to freed memory as any Python process does. And its processes skip the
  periodic work that only Dask's dashboard reads (FKS starts none): each worker's statistical
  profiler, which sampled every thread's stack every 10 ms, and the 20 ms event-loop ticks and
  0.5 s system monitors of the scheduler, nannies and workers. An idle two-worker cluster used
  ~0.056 of a core for them (~5 % of a core per worker during a features run); ~0.01 after.

The task run itself (states, events, logs, results, retries) is Prefect's, unchanged: the task
engine finds the settings and the client in the context and uses them instead of making new ones.
Async tasks go through prefect-dask's own path.
"""

from __future__ import annotations

import contextvars
import operator
import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any, Generic, TypeVar
from uuid import UUID, uuid4

import dask.config
import distributed
from prefect.context import (
    AssetContext,
    EngineContext,
    SettingsContext,
    SyncClientContext,
    TagsContext,
    TaskRunContext,
    serialize_context,
)
from prefect.task_engine import run_task_sync
from prefect.tasks import Task
from prefect.utilities.engine import collect_task_run_inputs_sync
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

__all__ = ["CLUSTER_CONFIG", "FanOutDaskTaskRunner", "run_task_in_worker"]

CLUSTER_CONFIG: dict[str, Any] = {
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}
"""Dask configuration for the clusters FKS starts (scheduler, nannies and the worker processes,
which get their nanny's configuration):

- Dask's nanny does not set ``MALLOC_TRIM_THRESHOLD_`` (None unsets it; glibc's dynamic trimming
  applies), unless the starting process's environment has it (a nanny started with Dask's
  defaults puts it there as well);
- no statistical profiler in the workers (Dask's default samples every worker thread every 10 ms
  for the dashboard's profile page);
- the event loop's health tick every 1 s instead of every 20 ms (a loop blocked for longer than
  ``distributed.admin.tick.limit``, 3 s, is still reported), the system monitor (CPU, memory and
  network figures for the dashboard) every 2 s instead of 0.5 s, and a worker's memory checks
  (pausing and spilling at its memory limit's thresholds) every 0.5 s instead of 0.1 s.

For a cluster started by hand, the same as environment variables (docs/scale-out.md)."""


class FanOutDaskTaskRunner(DaskTaskRunner):
    """``DaskTaskRunner`` (same options, same cluster handling) whose sync task runs go through
    :func:`run_task_in_worker`, with the flow run's context serialized once per flow run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._context_key: tuple[Any, ...] | None = None
        self._context: dict[str, Any] = {}

    @property
    def client(self) -> Any:
        """prefect-dask's client (connecting, or starting the ``LocalCluster`` on first use),
        its processes started under :data:`CLUSTER_CONFIG`."""
        with dask.config.set(CLUSTER_CONFIG):
            return DaskTaskRunner.client.fget(self)  # type: ignore[attr-defined]

    def _flow_context(self) -> dict[str, Any]:
        """``serialize_context()`` of the current contexts, made again only when one of them is
        another object or the tags differ (a runner is duplicated for every flow run; a parent
        task run or other settings make new contexts)."""
        key = (
            EngineContext.get(),
            TaskRunContext.get(),
            SettingsContext.get(),
            frozenset(TagsContext.get().current_tags),  # TagsContext.get() is new when unset
        )
        cached = self._context_key
        if (
            cached is None
            or any(a is not b for a, b in zip(key[:3], cached[:3], strict=True))
            or key[3] != cached[3]
        ):
            self._context = _serialized_context(key[2])
            self._context_key = key
        return self._context

    def submit(  # type: ignore[override]
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[Any] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectDaskFuture[Any]:
        if task.isasync:
            return super().submit(task, parameters, wait_for, dependencies)
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        parameters = self._optimize_futures(parameters)
        waits = self._optimize_futures(wait_for) if wait_for else None
        task_run_id = uuid4()
        # what prefect_dask.client.PrefectDaskClient.submit does for a Task
        inputs = {
            name: collect_task_run_inputs_sync(value, future_cls=distributed.Future)
            for name, value in parameters.items()
        }
        if dependencies:
            inputs = {name: runs.union(dependencies.get(name, set())) for name, runs in inputs.items()}
        context = dict(self._flow_context())
        context["asset_context"] = AssetContext.from_task_and_inputs(
            task=task, task_run_id=task_run_id, task_inputs=inputs, copy_to_child_ctx=True
        ).serialize()
        future = self.client.submit(
            run_task_in_worker,
            task,
            key=f"{task.name}-{task_run_id.hex}",
            pure=False,
            task_run_id=task_run_id,
            parameters=parameters,
            wait_for=waits,
            dependencies=inputs,
            context=context,
        )
        return PrefectDaskFuture[Any](wrapped_future=future, task_run_id=task_run_id)


K = TypeVar("K")
V = TypeVar("V")


class _Kept(Generic[K, V]):
    """The values made for the last few distinct keys of this process (keys compared with
    ``same``), under a lock: a key seen again gets the value made before."""

    def __init__(self, same: Callable[[K, K], bool], size: int = 8) -> None:
        self._same = same
        self._size = size
        self._lock = threading.Lock()
        self._items: list[tuple[K, V]] = []

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The value kept for ``key``, else ``make()``'s, kept."""
        with self._lock:
            for kept, value in self._items:
                if self._same(kept, key):
                    return value
            value = make()
            self._items.append((key, value))
            del self._items[: -self._size]
            return value


_settings: _Kept[dict[str, Any], SettingsContext] = _Kept(operator.eq)
"""Worker side: a serialized ``SettingsContext`` -> the context validated from it."""
_dumps: _Kept[SettingsContext, dict[str, Any]] = _Kept(operator.is_)
"""Flow side: a ``SettingsContext`` object -> its ``serialize()``."""
_clients = threading.local()


def _serialized_context(settings: SettingsContext | None) -> dict[str, Any]:
    """``serialize_context()``, its settings part dumped once per ``SettingsContext`` object of this
    process (the same object across the flow runs of one process, e.g. ``fks pipeline``'s
    subflows: dumping Prefect's whole settings model is ~20 ms of the flow's critical path before
    its first task reaches a worker)."""
    if settings is None:
        return serialize_context()
    dump = _dumps.get(settings, settings.serialize)

    def with_dumped_settings() -> dict[str, Any]:
        # in this copy of the context only: what serialize_context() reads as the settings context
        SettingsContext.__var__.set(_DumpedSettings(dump))  # type: ignore[arg-type]
        return serialize_context()

    return contextvars.copy_context().run(with_dumped_settings)


class _DumpedSettings:
    """Stands in for a ``SettingsContext`` inside ``serialize_context()``: its dump, made before."""

    def __init__(self, dump: dict[str, Any]) -> None:
        self._dump = dump

    def serialize(self, include_secrets: bool = True) -> dict[str, Any]:
        """The dump (``serialize_context`` asks with secrets included, as the dump was made)."""
        return self._dump


def _settings_context(serialized: dict[str, Any]) -> SettingsContext:
    """A new ``SettingsContext`` for ``serialized`` (a ``SettingsContext.serialize()``), its
    settings validated once per process and distinct dump."""
    return _settings.get(serialized, lambda: SettingsContext(**serialized)).model_copy()


def _client_context(settings: Any) -> SyncClientContext:
    """This thread's open ``SyncClientContext`` for the API ``settings`` name (made, entered and
    version-checked once; call under the settings' context)."""
    api = settings.api
    key = (
        str(api.url),
        api.key.get_secret_value() if api.key else None,
        api.auth_string.get_secret_value() if api.auth_string else None,
    )
    kept: dict[tuple[str | None, ...], SyncClientContext] = _clients.__dict__.setdefault("by_api", {})
    context = kept.get(key)
    if context is None:
        context = SyncClientContext()
        context.__enter__()  # opens the client, checks the API version; stays open with the thread
        SyncClientContext.__var__.reset(context._token)  # type: ignore[arg-type]
        kept[key] = context
    return context


def run_task_in_worker(
    task: Task[Any, Any],
    *,
    task_run_id: UUID,
    parameters: dict[str, Any],
    wait_for: Any,
    dependencies: dict[str, set[Any]],
    context: dict[str, Any],
) -> Any:
    """``prefect.task_engine.run_task_sync`` of one task run in a Dask worker (returns its final
    state), under this process's settings and this thread's API client instead of new ones."""
    serialized_settings = context.get("settings_context")
    with ExitStack() as stack:
        if serialized_settings:  # always, from serialize_context
            settings = stack.enter_context(_settings_context(serialized_settings))
            token = SyncClientContext.__var__.set(_client_context(settings.settings))
            stack.callback(SyncClientContext.__var__.reset, token)
            # the settings are entered here: hydrated_context would validate them again
            context = {**context, "settings_context": {}}
        return run_task_sync(
            task,
            task_run_id=task_run_id,
            parameters=parameters,
            wait_for=wait_for,
            dependencies=dependencies,
            context=context,
            return_type="state",
        )
