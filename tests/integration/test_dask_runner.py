"""``FanOutDaskTaskRunner`` runs Prefect task runs in Dask workers as prefect-dask does, with one
API client per worker thread and the settings validated once per worker process: the task runs see
the flow's settings (its API URL), its tags and their own run, failures stay failures, and two flow
runs' tasks in the same worker thread share one client."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from dask.utils import parse_timedelta
from distributed import get_worker
from prefect import flow, tags, task
from prefect.client.orchestration import get_client
from prefect.context import SettingsContext, TaskRunContext, serialize_context

from tasks.dask_runner import CLUSTER_CONFIG, FanOutDaskTaskRunner, _serialized_context

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_server")]


@task(name="where")
def where(i: int) -> tuple[int, int, str, str, list[str], str, int]:
    """Where task run ``i`` ran: pid, its client, the client's and the settings' API URLs, its
    tags and name."""
    client = get_client(sync_client=True)
    context = TaskRunContext.get()
    settings = SettingsContext.get()
    assert context is not None and settings is not None
    return (
        os.getpid(),
        id(client),
        str(client.api_url),
        str(settings.settings.api.url),
        sorted(context.task_run.tags),
        context.task_run.name,
        i,
    )


@task(name="boom", retries=1)
def boom(i: int) -> int:
    raise ValueError(f"boom {i}")


@flow(name="spread", validate_parameters=False)
def spread(n: int) -> list[tuple[int, int, str, str, list[str], str, int]]:
    with tags("fan"):
        futures = where.map(range(n))
    failed = boom.submit(n)
    failed.wait()
    assert failed.state.is_failed() and "boom" in str(failed.state.message)
    return [f.result() for f in futures]


@pytest.fixture
def one_worker() -> Iterator[str]:
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_task_runs_share_the_worker_client_and_keep_their_context(
    one_worker: str, prefect_server: str
) -> None:
    runner = FanOutDaskTaskRunner(address=one_worker)
    on_cluster = spread.with_options(task_runner=runner)  # type: ignore[arg-type]
    first = on_cluster(4)
    second = on_cluster(3)

    assert [r[-1] for r in first] == [0, 1, 2, 3] and [r[-1] for r in second] == [0, 1, 2]
    assert {r[0] for r in first + second} - {os.getpid()} == {r[0] for r in first + second}  # in the worker
    assert len({r[1] for r in first + second}) == 1  # one client for every task run of the thread
    assert {r[2].rstrip("/") for r in first + second} == {prefect_server.rstrip("/")}
    assert {r[3].rstrip("/") for r in first + second} == {prefect_server.rstrip("/")}
    assert all(r[4] == ["fan"] for r in first + second)
    assert len({r[5] for r in first}) == 4  # each its own task run


@flow(name="contexts")
def contexts() -> tuple[dict[str, object], dict[str, object]]:
    """What the runner ships to the workers, and Prefect's own ``serialize_context()``."""
    return _serialized_context(SettingsContext.get()), serialize_context()


def test_the_shipped_context_is_prefects_with_the_settings_dumped_once_per_settings_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (first, expected_first) = contexts()
    dumps: list[object] = []
    dump = SettingsContext.serialize

    def counted(self: SettingsContext, include_secrets: bool = True) -> dict[str, object]:
        dumps.append(self)
        return dump(self, include_secrets=include_secrets)

    monkeypatch.setattr(SettingsContext, "serialize", counted)
    second = _serialized_context(SettingsContext.get())
    assert dumps == []  # the same settings context: not dumped again
    (third, expected_third) = contexts()
    assert len(dumps) == 1  # once, by Prefect's serialize_context for the comparison
    assert first == expected_first and third == expected_third  # what prefect-dask would ship
    assert first["flow_run_context"] != third["flow_run_context"]  # each flow run its own
    assert first["settings_context"] is second["settings_context"] is third["settings_context"]


@task(name="worker-setup")
def worker_setup(i: int) -> tuple[int, str | None, list[str], float, float]:
    """The worker's pid, ``MALLOC_TRIM_THRESHOLD_``, periodic callbacks, and its event loop's tick
    and system monitor intervals (ms)."""
    worker = get_worker()
    return (
        os.getpid(),
        os.environ.get("MALLOC_TRIM_THRESHOLD_"),
        sorted(worker.periodic_callbacks),
        worker._tick_interval * 1000,
        worker.periodic_callbacks["monitor"].callback_time,
    )


@flow(name="setup", validate_parameters=False)
def setup() -> list[tuple[int, str | None, list[str], float, float]]:
    return [f.result() for f in worker_setup.map(range(2))]


def test_the_runners_own_cluster_runs_under_the_cluster_config(monkeypatch: pytest.MonkeyPatch) -> None:
    # a nanny started with Dask's defaults (another test's cluster) sets it in this process too
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    runner = FanOutDaskTaskRunner(
        cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "processes": True, "dashboard_address": None}
    )
    ran = setup.with_options(task_runner=runner)()  # type: ignore[arg-type]
    assert {r[0] for r in ran} != {os.getpid()}
    assert [r[1] for r in ran] == [None, None]  # Dask's nanny would set 65536
    for _, _, callbacks, tick_ms, monitor_ms in ran:
        assert "monitor" in callbacks and not {"profile", "profile-cycle"} & set(callbacks)  # no profiler
        wanted = [
            parse_timedelta(CLUSTER_CONFIG[f"distributed.admin.{k}.interval"]) * 1000
            for k in ("tick", "system-monitor")
        ]
        assert [tick_ms, monitor_ms] == wanted != [20, 500]  # Dask's defaults: 20 ms and 500 ms
