"""The deployments end to end on the session's Prefect server: ``fks deploy --apply`` creates the
pool, the deployments, the webhook blocks and the notification automations, ``fks worker`` runs
them, the daily ingest and the retraining complete with their effects (bars stored, a new
registered version), a failing run reaches the webhook through the server's automation (not the
flow's hook as well), the gate's decisions reach it through their events' automation, and
``fks status`` shows the last runs."""

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from config.flows import InputError
from config.settings import PROJECT_ROOT, Settings
from execution.notify import Event
from flows.cli import app
from flows.cli.deploy import apply_notifications, apply_zombie_automation
from tasks.automations import (
    GATE_DECISIONS,
    RUN_FAILURES,
    ZOMBIE_RUNS,
    declare_automations,
    declare_zombie_automation,
)
from tests.integration.test_run_notifications import _summary
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
def automations_removed() -> Iterator[None]:
    """After the test, no FKS automation or webhook block on the session's server: the session's
    other tests post through the flows' hooks, which an automation would silence (and the zombie
    automation would watch their runs)."""
    yield
    apply_notifications(declare_automations(), [])
    apply_zombie_automation(None)


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


def _heartbeat(run_id: Any, tags: list[str]) -> None:
    """Post the heartbeat event a worker's flow run sends (``prefect.flow-run.heartbeat``, its tags
    as related resources) to the session's server, as the run's process would."""
    import httpx
    from prefect.settings import get_current_settings

    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
        "related": [
            {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"} for tag in tags
        ],
    }
    url = f"{get_current_settings().api.url}/events"
    assert httpx.post(url, json=[event], timeout=10).status_code == 204


@pytest.fixture
def zombie_removed() -> Iterator[None]:
    """After the test, no zombie automation on the session's server (its short window would crash
    the other tests' runs)."""
    yield
    apply_zombie_automation(None)


@pytest.mark.usefixtures("zombie_removed")
def test_a_deployed_run_that_stops_sending_heartbeats_is_marked_crashed(tmp_path: Path) -> None:
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.events.schemas.automations import Posture
    from prefect.states import Running

    assert declare_zombie_automation(None) is None  # no heartbeats: nothing to watch
    assert declare_zombie_automation(180).within_s == 540  # type: ignore[union-attr]
    with pytest.raises(InputError, match="FKS_ZOMBIE_AFTER_S=60 is not longer than the heartbeat"):
        declare_zombie_automation(180, after_s=60)  # live runs would be crashed between heartbeats
    spec = declare_zombie_automation(5, after_s=10)  # a run beating every 5 s, dead after 10 s
    assert spec is not None
    made = apply_zombie_automation(spec)
    assert apply_zombie_automation(spec) == made  # updated, never doubled
    with get_client(sync_client=True) as client:
        (automation,) = client.read_automations_by_name(ZOMBIE_RUNS)
        assert automation.trigger.posture == Posture.Proactive  # type: ignore[union-attr]
        assert automation.trigger.within == timedelta(seconds=10)  # type: ignore[union-attr]
        flow = Flow(fn=lambda: None, name="fks-zombie-test")
        deployed = client.create_flow_run(flow, tags=["fks"], state=Running()).id
        foreign = client.create_flow_run(flow, tags=["other-team"], state=Running()).id
    _heartbeat(deployed, ["fks"])
    _heartbeat(foreign, ["other-team"])
    _wait_for(lambda: _state(deployed).is_crashed(), 90, "the silent run's Crashed", tmp_path / "none.log")
    assert "no heartbeat for 10 s" in (_state(deployed).message or "")
    assert _state(foreign).is_running()  # not an FKS deployment's run: not watched

    apply_zombie_automation(None)
    with get_client(sync_client=True) as client:
        assert client.read_automations_by_name(ZOMBIE_RUNS) == []


def _via_automation(request: Any) -> bool:
    """Whether a received request came from a Prefect webhook block (its ``X-FKS-Via`` header)."""
    return {k.lower(): v for k, v in request.headers.items()}.get("x-fks-via") == "prefect-automation"


def test_the_failure_automation_renders_the_notifier_body() -> None:
    """The failed-run automation's template, rendered by Prefect's template engine as the server
    does, gives the body and the line the flow's hook would post."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.server.utilities.user_templates import (
        render_user_template_sync,
        validate_user_template,
    )

    (failures,) = [a for a in declare_automations() if a.name == RUN_FAILURES]
    validate_user_template(failures.payload)
    run_id = uuid.uuid4()
    message = "Flow run encountered an exception. InputError: no `bars`\n for NOPE <&> 'x' \"y\""
    event = ReceivedEvent(
        occurred=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        event="prefect.flow-run.Failed",
        resource={
            "prefect.resource.id": f"prefect.flow-run.{run_id}",
            "prefect.resource.name": "brave-otter",
            "prefect.state-name": "Failed",
            "prefect.state-message": message,
        },
        id=uuid.uuid4(),
    )
    run = SimpleNamespace(name="brave-otter", id=run_id, tags=["fks", "validate"])
    context = {"event": event, "flow": SimpleNamespace(name="validate"), "flow_run": run}
    body = json.loads(render_user_template_sync(failures.payload, context))
    fields = {
        "flow": "validate",
        "run": "brave-otter",
        "state": "Failed",
        "flow_run_id": str(run_id),
        "tags": "validate",
        "message": " ".join(message.split()),
    }
    expected = Event("error", "", "validate run brave-otter failed", fields, ts=event.occurred).payload()
    assert body == expected


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-60:]) if log.exists() else "(no log)"


@pytest.mark.usefixtures("automations_removed")
def test_deployments_run_on_a_worker_and_notify(
    settings: Settings, tmp_path: Path, receiver: Receiver, worker_env: dict[str, str]
) -> None:
    from mlflow import MlflowClient
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags
    from prefect.settings import get_current_settings

    from config.retraining import RetrainCheckConfig
    from flows.check_retraining import check_retraining
    from storage import read_bars
    from tasks.notify import notify_gate
    from tasks.store import store_for

    # the server's triggers and actions services evaluate the automations (the session's server
    # runs with this process's settings)
    services = get_current_settings().server.services
    assert services.triggers.enabled  # PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED (also the actions)
    pool = f"fks-test-{uuid.uuid4().hex[:6]}"
    log = tmp_path / "worker.log"
    started = time.monotonic()
    webhook = [SecretStr(worker_env["FKS_WEBHOOK_URLS"])]
    worker = _start_worker(pool, worker_env, log)  # it waits for the pool while fks deploy runs
    try:
        applied = _fks("deploy", "--apply", "--pool", pool, env=worker_env)
        assert applied.returncode == 0, applied.stderr + applied.stdout
        assert "ingest/1d-xnys" in applied.stdout and "retrain/forecaster-weekly" in applied.stdout
        assert "2 notification automation(s)" in applied.stdout
        assert "a deployed run silent for 540 s is marked Crashed" in applied.stdout  # 3 x 180 s
        # applied again: updated, never doubled
        assert len(apply_notifications(declare_automations(), webhook)) == 2
        with get_client(sync_client=True) as client:
            for name in (RUN_FAILURES, GATE_DECISIONS):
                (automation,) = client.read_automations_by_name(name)
                assert automation.enabled and len(automation.actions) == 1
            (zombie,) = client.read_automations_by_name(ZOMBIE_RUNS)
            assert zombie.trigger.within == timedelta(seconds=540)  # type: ignore[union-attr]
            block = client.read_block_document_by_name("fks-webhook-1", "webhook")
            assert automation.actions[0].block_document_id == block.id
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
        # the server's automation told the webhook (the triggers service reacts within seconds)
        _wait_for(lambda: bool(receiver.received), 120, "the failure's webhook", log)
        assert _via_automation(receiver.received[0])
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
    # the failure only, once (the flow's hook stayed silent: the automation covers it), and this
    # retraining was not evaluated
    assert len(receiver.received) == 1
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

    # the gate's decisions: events emitted by the task, posted by the server's automation (the task
    # itself posts nothing: the automation is there)
    told_before = len(receiver.received)
    assert notify_gate.fn(_summary(False), hooked) == 0
    assert notify_gate.fn(_summary(True), hooked) == 0
    _wait_for(lambda: len(receiver.received) >= told_before + 2, 120, "the gate's webhooks", log)
    gate = receiver.received[told_before:]
    assert all(_via_automation(r) for r in gate) and len(receiver.received) == told_before + 2
    by_kind = {r.json()["fks"]["kind"]: r.json() for r in gate}
    refused, promoted = by_kind["refusal"], by_kind["info"]
    assert refused["username"] == "fks" and refused["allowed_mentions"] == {"parse": []}
    assert refused["fks"]["title"] == "fks-forecaster v4 refused by the promotion gate"
    assert refused["fks"]["fields"]["why"] == "sharpe 1.25 does not beat the champion's 1.4 by 5%"
    assert refused["text"] == refused["content"]
    assert refused["text"].startswith("⛔ REFUSAL fks-forecaster v4 refused")
    assert promoted["fks"]["title"] == "fks-forecaster v4 promoted to champion"
    assert promoted["fks"]["fields"] == {
        "outcome": "promoted",
        "sharpe": 1.25,
        "champion": 0.8,
        "buy and hold": 0.5,
    }
    print("seconds:", {k: round(v, 1) for k, v in timings.items()})
