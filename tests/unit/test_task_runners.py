"""FKS_TASK_RUNNER, FKS_DASK_ADDRESS and FKS_DASK_WORKERS pick the runner that fans out per-symbol
tasks; nothing starts until a flow enters it."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from prefect_dask import DaskTaskRunner
from pydantic import ValidationError

from config.settings import Settings
from flows.features import features
from tasks.runners import fanned_out, task_runner_for


def test_each_setting_builds_its_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().task_runner == "threads" and Settings().dask_workers == 2
    sequential = task_runner_for(Settings(task_runner="sequential"))
    assert isinstance(sequential, ThreadPoolTaskRunner) and sequential._max_workers == 1
    threads = task_runner_for(Settings(task_runner="threads"))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers > 1

    monkeypatch.setenv("FKS_TASK_RUNNER", "dask")
    monkeypatch.setenv("FKS_DASK_WORKERS", "3")
    local = task_runner_for(Settings())
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs == {
        "n_workers": 3,
        "threads_per_worker": 1,
        "processes": True,
        "dashboard_address": None,
    }
    assert local._client is None  # no cluster yet: it starts with the first mapped task
    monkeypatch.setenv("FKS_DASK_ADDRESS", "tcp://127.0.0.1:8786")
    remote = task_runner_for(Settings())
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://127.0.0.1:8786"


def test_fanned_out_flow_carries_the_runner_and_bad_values_are_refused() -> None:
    flow = fanned_out(features, Settings(task_runner="sequential"))
    assert flow.name == features.name and flow.fn is features.fn
    assert isinstance(flow.task_runner, ThreadPoolTaskRunner) and flow.task_runner._max_workers == 1
    with pytest.raises(ValidationError, match="sequential"):
        Settings(task_runner="processes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(dask_workers=0)
