"""The deployments end to end on the session's Prefect server: ``fks deploy --apply`` creates the
pool and the deployments, ``fks worker`` runs them, the daily ingest and the retraining complete
with their effects (bars stored, a new registered version, the gate's decision sent to the
webhook), a failing run is sent to the webhook, and ``fks status`` shows the last runs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from config.settings import PROJECT_ROOT, Settings
from flows.cli import app
from tests.integration.test_webhooks import Receiver

pytestmark = [pytest.mark.usefixtures("prefect_server"), pytest.mark.slow]

SMALL = {
    "symbol": "GOOGL",
    "lookback": 10,
    "units": [4],
    "epochs": 1,
    "walk_forward": {"folds": 1},
    "seed": 3,
    "explain": {"enabled": False},
}
"""A tiny forecaster without SHAP: the deployment is under test here, not the model."""

TOKEN = "T0KEN-deploy-5ecret"


def _env(settings: Settings, tmp_path: Path, webhook: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FKS_")}
    env |= {
        "FKS_DATA_DIR": str(settings.data_dir),
        "FKS_DB_URL": settings.db_url,
        "FKS_MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "FKS_MLFLOW_ARTIFACT_ROOT": str(settings.mlflow_artifact_root),
        "FKS_LAKE_URI": f"file://{tmp_path / 'lake'}",
        "FKS_WEBHOOK_URLS": webhook,
        "PYTHONPATH": str(PROJECT_ROOT),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the worker asks for runs every second (default 10)
    }
    return env


def _fks(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with contextlib.closing(Receiver()) as running:
        yield running


@pytest.fixture
def worker_env(settings: Settings, tmp_path: Path, receiver: Receiver) -> dict[str, str]:
    return _env(settings, tmp_path, f"{receiver.url}/services/T0/B0/{TOKEN}")


def _start_worker(pool: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "worker", "--pool", pool, "--name", f"test-{pool}"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _start(name: str, parameters: dict[str, Any]) -> Any:
    """A run of deployment ``name`` created through the API (not waited for): its id."""
    from prefect.deployments import run_deployment

    return run_deployment(name, parameters=parameters, timeout=0, as_subflow=False).id


def _wait_final(run_id: Any, timeout: float, log: Path) -> Any:
    """The final state of flow run ``run_id``."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            state = client.read_flow_run(run_id).state
            if state is not None and state.is_final():
                return state
            time.sleep(0.5)
    raise AssertionError(f"flow run {run_id} did not finish within {timeout:g} s; worker log:\n{_tail(log)}")


def _wait_for(condition: Any, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout:g} s; worker log:\n{_tail(log)}")


def _state(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id).state


def _losing_account(settings: Settings, account: str) -> None:
    """Paper account ``account`` with 12 finished cycles whose equity falls from 100,000 to 90,000."""
    import pandas as pd

    from storage.desk import finish_cycle
    from storage.execution import open_account
    from tasks.store import store_for

    with store_for(settings).begin() as conn:
        open_account(conn, account, initial_cash=100_000.0, actor="test")
        days = pd.date_range("2024-01-02", periods=12, freq="B", tz="UTC")
        for i, day in enumerate(days):
            equity = 100_000.0 - 10_000.0 * i / (len(days) - 1)
            finish_cycle(conn, account, day, [], equity=equity, orders=0, refusals=0, venue_state=None)


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log.exists() else "(no log)"


def test_deployments_run_on_a_worker_and_notify(
    settings: Settings, tmp_path: Path, receiver: Receiver, worker_env: dict[str, str]
) -> None:
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from config.retraining import RetrainCheckConfig
    from flows.check_retraining import check_retraining
    from storage import read_bars
    from tasks.store import store_for

    pool = f"fks-test-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker.log"
    started = time.monotonic()
    worker = _start_worker(pool, worker_env, log)  # it waits for the pool while fks deploy runs
    try:
        applied = _fks("deploy", "--apply", "--pool", pool, env=worker_env)
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "ingest/1d-xnys" in applied.stdout and "retrain/forecaster-weekly" in applied.stdout
        with get_client(sync_client=True) as client:
            daily = client.read_deployment_by_name("ingest/1d-xnys")
            assert daily.work_pool_name == pool and daily.work_queue_name == "ingest"
            assert [s.schedule.cron for s in daily.schedules] == ["30 16 * * 1-5"]
            assert daily.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $FKS_PROJECT_DIR }}"}}
            ]
            assert not daily.paused and client.read_deployment_by_name("execute/paper").paused
            assert client.read_work_queue_by_name("training", work_pool_name=pool).concurrency_limit == 1
        timings = {"deploy": time.monotonic() - started}

        # the daily ingest, and beside it a run that fails (a symbol with no bars)
        ingesting = _start("ingest/1d-xnys", {"config": {"symbols": ["GOOGL"], "timeframe": "1d"}})
        failing = _start("validate/nightly", {"config": {"symbols": ["NOPE"]}})
        ingested = _wait_final(ingesting, 150, log)
        assert ingested.is_completed(), (ingested, _tail(log))
        with store_for(settings).connect() as conn:
            bars = read_bars(conn, "GOOGL", "1d")
        assert len(bars) > 2000  # the shipped GOOGL sample, 2009-2018
        timings["ingest"] = time.monotonic() - started - sum(timings.values())

        retraining = _start(
            "retrain/forecaster-weekly",
            {"config": {"family": "forecaster", "forecaster": SMALL, "evaluate": False}},
        )
        failed = _wait_final(failing, 60, log)
        assert failed.is_failed(), (failed, _tail(log))
        # the flow's failure hook told the webhook
        _wait_for(lambda: bool(receiver.received), 30, "the failure's webhook", log)
        error = receiver.received[0].json()
        assert error["fks"]["kind"] == "error" and error["fks"]["fields"]["flow"] == "validate"
        assert error["fks"]["fields"]["state"] == "Failed" and "NOPE" in error["fks"]["fields"]["message"]
        assert error["text"] == error["content"] and error["text"].startswith("❗ ERROR validate run")

        retrained = _wait_final(retraining, 240, log)
        assert retrained.is_completed(), (retrained, _tail(log))
        timings["retrain"] = time.monotonic() - started - sum(timings.values())
    finally:
        _stop(worker)

    versions = MlflowClient(settings.mlflow_tracking_uri).search_model_versions("name='fks-forecaster'")
    assert [str(v.version) for v in versions] == ["1"]
    assert versions[0].tags.get("config") and '"symbol":"GOOGL"' in versions[0].tags["config"]
    assert len(receiver.received) == 1  # the failure only: this retraining was not evaluated
    # results were persisted in the lake's folder
    results = tmp_path / "lake" / "_prefect" / "results"
    assert results.is_dir() and any(results.iterdir())
    # nothing of the webhook's token reached the worker's log
    assert TOKEN not in log.read_text(errors="replace")

    # a paper account losing 10% makes the retraining check (run here, on the same server) start a
    # run of the retraining deployment, which waits for a worker; the webhook hears why
    _losing_account(settings, "desk")
    hooked = settings.model_copy(update={"webhook_urls": [SecretStr(worker_env["FKS_WEBHOOK_URLS"])]})
    decision = check_retraining(RetrainCheckConfig(account="desk"), hooked)
    assert decision.retrain and decision.reasons[0].startswith("paper P&L -10.00% over 12 cycles")
    with get_client(sync_client=True) as client:
        started_by_check = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["trigger:retrain-check"]))
        )
        weekly = client.read_deployment_by_name("retrain/forecaster-weekly")
    assert len(started_by_check) == 1 and started_by_check[0].state is not None
    assert started_by_check[0].state.is_scheduled() and started_by_check[0].deployment_id == weekly.id
    told = receiver.received[-1].json()["fks"]
    assert told["kind"] == "info" and told["title"].startswith("retraining fks-forecaster: paper P&L -10.00%")
    assert told["fields"]["flow_run"] == str(started_by_check[0].id)

    status = CliRunner().invoke(
        app, ["status", "--json"], env={"PREFECT_API_URL": os.environ["PREFECT_API_URL"]}
    )
    assert status.exit_code == 0, status.output
    rows = {r["deployment"]: r for r in json.loads(status.stdout)}
    assert rows["ingest/1d-xnys"]["last_state"] == "Completed"
    assert rows["validate/nightly"]["last_state"] == "Failed"
    assert rows["retrain/forecaster-weekly"]["last_state"] == "Completed"
    assert rows["ingest/1d-xnys"]["next_run"] and rows["execute/paper"]["paused"]
    print("seconds:", {k: round(v, 1) for k, v in timings.items()})
