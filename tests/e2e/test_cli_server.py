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
import time
import urllib.request
from pathlib import Path

import pytest

from storage.runs import process_alive

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
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "ingest", "--symbols", "SPX"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _wait_for(predicate: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def _temporary_server(pid: int) -> int | None:
    found = [c for c in _children(pid) if "prefect.server.api.server:create_app" in _cmdline(c)]
    return found[0] if found else None


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
        pid = status["pid"]
    finally:
        stopped = _fks(tmp_path, "server", "stop")
    assert stopped.returncode == 0 and "Stopped" in stopped.stdout
    assert not process_alive(pid)
    assert not json.loads(_fks(tmp_path, "server", "status", "--json").stdout)["running"]


def test_terminated_command_ends_its_temporary_server_and_a_killed_run_is_interrupted(
    tmp_path: Path,
) -> None:
    command = _spawn_ingest(tmp_path)
    try:
        assert _wait_for(lambda: _temporary_server(command.pid), 120), "no temporary server started"
        temporary = _temporary_server(command.pid)
        assert temporary is not None
        command.send_signal(signal.SIGTERM)
        command.wait(timeout=60)
        assert _wait_for(lambda: not process_alive(temporary), 15), "the temporary server outlived fks"
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()

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
        assert _wait_for(running_row, 120), "the ingestion never started a run"
        orphan = _temporary_server(killed.pid)
        killed.send_signal(signal.SIGKILL)
        killed.wait(timeout=30)
    finally:
        if killed.poll() is None:
            killed.kill()
            killed.wait()
        if orphan is not None and process_alive(orphan):  # SIGKILL cannot be caught: end the orphan here
            os.kill(orphan, signal.SIGTERM)
    listed = _fks(tmp_path, "data", "runs", "--json")
    assert listed.returncode == 0, listed.stderr
    states = {r["pid"]: r["status"] for r in json.loads(listed.stdout)}
    assert states[killed.pid] == "interrupted"
