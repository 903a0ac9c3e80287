"""``fks server`` and the temporary server as a user meets them: a real background Prefect server
that a later ``fks ingest`` reports to; without it, the temporary server a command starts is ended
when the command is terminated, and a killed ingestion's run shows as interrupted."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flows._server import SERVER_SETTINGS
from storage.processes import process_running
from tests.process_support import reaped, wait_for

pytestmark = pytest.mark.slow

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"},
        "PYTHONPATH": str(PROJECT_ROOT),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "FKS_DB_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "FKS_DATA_DIR": str(tmp_path / "data"),
        "FKS_MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        "COLUMNS": "200",
    }


def _fks(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _spawn_ingest(tmp_path: Path) -> subprocess.Popen[str]:
    """``fks ingest --symbols SPX``, its output appended to ``tmp_path/ingest.log``."""
    with (tmp_path / "ingest.log").open("a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "ingest", "--symbols", "SPX"],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _child_running(pid: int, marker: str) -> int | None:
    found = [c for c in _children(pid) if marker in _cmdline(c)]
    return found[0] if found else None


def _temporary_server(pid: int) -> int | None:
    return _child_running(pid, "prefect.server.api.server:create_app")


def _watchdog(pid: int) -> int | None:
    return _child_running(pid, "flows._watchdog")


def _events(api_url: str, flow_run_id: str) -> list[str]:
    body = json.dumps({"filter": {"any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 50})
    request = urllib.request.Request(
        f"{api_url}/events/filter", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return [e["event"] for e in json.loads(response.read())["events"]]


def _run_events(api_url: str, flow_run_id: str) -> list[str]:
    """The events the server stored for a flow run, once the command's own last events are in: its
    task runs' ``Completed`` (sent by the command after any heartbeat, on the same connection)."""
    events: list[str] = []

    def stored() -> bool:
        events[:] = _events(api_url, flow_run_id)
        return "prefect.task-run.Completed" in events

    assert wait_for(stored, 30), f"the run's task events never reached the server: {events}"
    return events


def _task_run_states(api_url: str, flow_run_id: str) -> set[str]:
    body = json.dumps({"flow_runs": {"id": {"any_": [flow_run_id]}}})
    request = urllib.request.Request(
        f"{api_url}/task_runs/filter", data=body.encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return {r["state_type"] for r in json.loads(response.read())}


def test_background_server_start_use_status_stop(tmp_path: Path) -> None:
    started = _fks(tmp_path, "server", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        status = json.loads(_fks(tmp_path, "server", "status", "--json").stdout)
        assert status["running"] and status["healthy"] and status["url"].endswith("/api")
        assert _fks(tmp_path, "server", "start").stdout.startswith("The Prefect server already runs")
        ingested = _fks(tmp_path, "ingest", "--symbols", "SPX")
        assert ingested.returncode == 0, ingested.stderr
        request = urllib.request.Request(
            f"{status['url']}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            runs = json.loads(response.read())
        assert [r["state_type"] for r in runs if r["name"]] and any(
            r["state_type"] == "COMPLETED" for r in runs
        )  # the ingest flow ran against the background server
        completed = next(r["id"] for r in runs if r["state_type"] == "COMPLETED")
        assert "prefect.flow-run.heartbeat" not in _run_events(status["url"], completed)
        pid = status["pid"]
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        for name, value in SERVER_SETTINGS.items():  # the task run recorder writes in batches...
            assert environ[name.encode()] == value.encode()
        assert wait_for(lambda: _task_run_states(status["url"], completed) == {"COMPLETED"}, 30), (
            _task_run_states(status["url"], completed)
        )  # ...and still records every task run, at most a flush interval later
    finally:
        stopped = _fks(tmp_path, "server", "stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert not process_running(pid)
    assert not json.loads(_fks(tmp_path, "server", "status", "--json").stdout)["running"]


def test_a_terminated_or_killed_command_leaves_no_temporary_server_and_its_run_is_interrupted(
    tmp_path: Path,
) -> None:
    with reaped(_spawn_ingest(tmp_path)) as command:
        assert wait_for(lambda: _temporary_server(command.pid), 120), "no temporary server started"
        temporary = _temporary_server(command.pid)
        assert wait_for(lambda: _watchdog(command.pid), 30), "a temporary server without its watchdog"
        watchdog = _watchdog(command.pid)
        assert temporary is not None and watchdog is not None
        command.send_signal(signal.SIGTERM)
        command.wait(timeout=60)
        assert wait_for(lambda: not process_running(temporary), 15), "the temporary server outlived fks"
        assert wait_for(lambda: not process_running(watchdog), 15), "the watchdog outlived fks"

    killed = _spawn_ingest(tmp_path)
    orphan: int | None = None

    def running_row() -> bool:
        try:
            with sqlite3.connect(tmp_path / "cli.db") as conn:
                return bool(
                    conn.execute("SELECT COUNT(*) FROM ingest_runs WHERE status = 'running'").fetchone()[0]
                )
        except sqlite3.Error:
            return False

    try:
        with reaped(killed):
            assert wait_for(running_row, 120), (
                f"the ingestion never started a run (exit {killed.poll()}):\n"
                + (tmp_path / "ingest.log").read_text()[-3000:]
            )
            orphan = _temporary_server(killed.pid)
            assert orphan is not None
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
        # SIGKILL skips every handler of fks: its watchdog ends the server
        assert wait_for(lambda: not process_running(orphan), 20), (
            "the killed command's server is left running"
        )
    finally:
        if orphan is not None and process_running(orphan):  # the watchdog failed: end it here
            os.kill(orphan, signal.SIGTERM)
    listed = _fks(tmp_path, "data", "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {r["pid"]: r["status"] for r in json.loads(listed.stdout)}
    assert states[killed.pid] == "interrupted"


def _flow_runs(api_url: str) -> list[dict[str, object]]:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return list(json.loads(response.read()))


def test_a_killed_command_s_flow_run_is_marked_crashed_by_the_next_command(tmp_path: Path) -> None:
    started = _fks(tmp_path, "server", "start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        url = json.loads(_fks(tmp_path, "server", "status", "--json").stdout)["url"]
        with reaped(_spawn_ingest(tmp_path)) as killed:
            assert wait_for(lambda: any(r["state_type"] == "RUNNING" for r in _flow_runs(url)), 120), (
                "the ingestion's flow run never started"
            )
            killed.send_signal(signal.SIGKILL)
            killed.wait(timeout=30)
        (orphan,) = [r for r in _flow_runs(url) if r["state_type"] == "RUNNING"]
        assert f"fks-cli-process:{os.uname().nodename}:{killed.pid}:" in " ".join(orphan["tags"])  # type: ignore[arg-type]
        ingested = _fks(tmp_path, "ingest", "--symbols", "SPX")
        assert ingested.returncode == 0, ingested.stderr
        runs = {r["id"]: r for r in _flow_runs(url)}
        crashed = runs[orphan["id"]]
        assert crashed["state_type"] == "CRASHED"
        assert f"pid {killed.pid}" in crashed["state"]["message"]  # type: ignore[index]
        assert [r["state_type"] for r in runs.values() if r["id"] != orphan["id"]] == ["COMPLETED"]
    finally:
        _fks(tmp_path, "server", "stop")
