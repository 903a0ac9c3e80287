"""Interrupted ingestions (issue 19): each run records its process; a run whose process is gone on
this host becomes ``interrupted`` on the next start, never one of another host; migration 0012."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect

from storage import make_engine
from storage.processes import process_running, process_started
from storage.runs import (
    ProcessId,
    current_process,
    finish_ingest_run,
    list_ingest_runs,
    mark_interrupted_runs,
    recent_ingest_runs,
    start_ingest_run,
)
from tests.migration_support import migrate_to

PROJECT_ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


def _start(conn: object, symbol: str = "SPX", process: ProcessId | None = None) -> int:
    return start_ingest_run(
        conn,  # type: ignore[arg-type]
        batch_id="b1",
        symbol=symbol,
        timeframe="1d",
        source="csv",
        requested={},
        process=process,
    )


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has it (until the kernel hands it out again)


def test_a_run_records_its_process(engine: Engine) -> None:
    with engine.begin() as conn:
        run_id = _start(conn)
    with engine.connect() as conn:
        (run,) = list_ingest_runs(conn)
        pid_started = conn.exec_driver_sql("SELECT pid_started FROM ingest_runs").scalar_one()
    assert (run.id, run.host, run.pid, run.status) == (run_id, HOST, os.getpid(), "running")
    assert pid_started == current_process().started
    assert process_running(os.getpid(), current_process().started)


def test_gone_processes_of_this_host_only_become_interrupted(engine: Engine) -> None:
    me = current_process()
    dead = _dead_pid()
    with engine.begin() as conn:
        alive = _start(conn, "A")
        gone = _start(conn, "B", ProcessId(HOST, dead, None))
        reused = _start(conn, "C", ProcessId(HOST, me.pid, (me.started or 0) + 1))  # same pid, later process
        elsewhere = _start(conn, "D", ProcessId("another-host", dead, None))
        finished = _start(conn, "E", ProcessId(HOST, dead, None))
        finish_ingest_run(conn, finished, status="success")
        legacy = _start(conn, "F")
        conn.exec_driver_sql(f"UPDATE ingest_runs SET host = NULL, pid = NULL WHERE id = {legacy}")
    with engine.begin() as conn:
        marked = mark_interrupted_runs(conn)
    expected = [gone] + ([reused] if me.started is not None else [])
    assert marked == expected
    with engine.connect() as conn:
        status = {r.id: r.status for r in list_ingest_runs(conn)}
        (row,) = [r for r in list_ingest_runs(conn) if r.id == gone]
    assert status[alive] == "running" and status[elsewhere] == "running" and status[legacy] == "running"
    assert status[finished] == "success" and status[gone] == "interrupted"
    assert row.finished_at is not None and f"pid {dead}" in (row.error or "")
    with engine.begin() as conn:
        assert mark_interrupted_runs(conn) == []  # once
        with pytest.raises(ValueError, match="already finished"):
            finish_ingest_run(conn, gone, status="success")
    with engine.connect() as conn:
        newest = recent_ingest_runs(conn, limit=2)
    assert [r.id for r in newest] == [legacy, finished]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_zombie_process_s_run_becomes_interrupted(engine: Engine) -> None:
    """A process that has ended but is not reaped (a zombie: an orphan whose new parent, e.g. a
    container's init, never waits for it) no longer runs: its run is interrupted."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        process = ProcessId(HOST, child.pid, process_started(child.pid))
        assert process_running(child.pid, process.started)
        with engine.begin() as conn:
            run_id = _start(conn, "Z", process)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(child.pid) != "Z" and time.monotonic() < deadline:  # not waited for: a zombie
            time.sleep(0.02)
        assert _state(child.pid) == "Z"
        assert not process_running(child.pid, process.started)
        assert not process_running(child.pid)
        with engine.begin() as conn:
            assert mark_interrupted_runs(conn) == [run_id]
    finally:
        child.kill()
        child.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as handle:
        stat = handle.read()
    return stat[stat.rindex(b")") + 2 :].split()[0].decode()


def test_a_killed_ingestion_is_marked_interrupted(engine: Engine) -> None:
    """A process that starts a run and is killed with SIGKILL leaves it ``running``; the next start
    marks it ``interrupted``."""
    url = engine.url.render_as_string(hide_password=False)
    script = textwrap.dedent(
        f"""
        import sys, time
        from storage import make_engine
        from storage.runs import start_ingest_run
        with make_engine({url!r}).begin() as conn:
            start_ingest_run(
                conn, batch_id="killed", symbol="SPX", timeframe="1d", source="csv", requested={{}}
            )
        print("started", flush=True)
        time.sleep(60)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "started"
        with engine.begin() as conn:
            assert mark_interrupted_runs(conn) == []  # still running
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with engine.begin() as conn:
        (marked,) = mark_interrupted_runs(conn)
    with engine.connect() as conn:
        (run,) = list_ingest_runs(conn, batch_id="killed")
    assert (run.id, run.status, run.pid) == (marked, "interrupted", child.pid)


def test_0012_adds_the_process_columns_keeps_runs_and_round_trips(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0011")
        with eng.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO ingest_runs (batch_id, symbol, timeframe, source, requested, status, "
                "started_at) VALUES ('old', 'SPX', '1d', 'csv', '{}', 'running', 1)"
            )
            conn.exec_driver_sql(
                "INSERT INTO validation_results (batch_id, symbol, timeframe, suite, suite_version, trigger, "
                "rows_checked, rows_failed, rows_warned, success, outcomes, gaps, ingest_run_id, created_at) "
                "VALUES ('old', 'SPX', '1d', 'bars', '1', 'ingest', 1, 0, 0, true, '[]', '{}', 1, 1)"
            )
        migrate_to(eng, "0012")
        columns = {c["name"] for c in inspect(eng).get_columns("ingest_runs")}
        assert {"host", "pid", "pid_started"} <= columns
        with eng.begin() as conn:
            (run,) = list_ingest_runs(conn)
            assert (run.status, run.host, run.pid) == ("running", None, None)
            assert mark_interrupted_runs(conn) == []  # a run without its process is left alone
            conn.exec_driver_sql("UPDATE ingest_runs SET status = 'interrupted'")
            assert conn.exec_driver_sql("SELECT ingest_run_id FROM validation_results").scalar_one() == 1
        migrate_to(eng, "0011", up=False)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT status FROM ingest_runs").scalar_one() == "failed"
        assert "pid" not in {c["name"] for c in inspect(eng).get_columns("ingest_runs")}
        migrate_to(eng, "head")
    finally:
        eng.dispose()


def test_fks_data_runs_lists_recent_runs_as_json(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from storage import open_store

    db = tmp_path / "cli.db"
    eng = open_store(f"sqlite:///{db}")
    dead = _dead_pid()
    with eng.begin() as conn:
        for symbol in ("A", "B", "C"):
            _start(conn, symbol, ProcessId(HOST, dead, None))
    eng.dispose()
    env = {"FKS_DB_URL": f"sqlite:///{db}", "FKS_DATA_DIR": str(tmp_path / "data")}
    started = time.perf_counter()
    done = CliRunner().invoke(app, ["data", "runs", "--limit", "2", "--json"], env=env)
    assert done.exit_code == 0, done.output
    runs = json.loads(done.output)
    assert [(r["symbol"], r["status"]) for r in runs] == [("C", "interrupted"), ("B", "interrupted")]
    assert runs[0]["pid"] == dead and runs[0]["host"] == HOST and runs[0]["finished_at"]
    table = CliRunner().invoke(app, ["data", "runs"], env={**env, "COLUMNS": "250"})
    assert table.exit_code == 0 and "interrupted" in table.output and "A" in table.output
    assert time.perf_counter() - started < 30
