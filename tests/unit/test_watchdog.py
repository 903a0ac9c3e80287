"""The watchdog that ends a command's temporary Prefect server when the command dies
(:mod:`flows._watchdog`), and its registration as Prefect's temporary server
(:mod:`flows._temporary_server`). The server itself, started by a real ``fks`` command and
SIGKILLed, is in ``tests/e2e/test_cli_server.py``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows._watchdog import end, start_watchdog, stop_watchdog
from storage.processes import process_running, process_started
from tests.process_support import reaped, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    with reaped(subprocess.Popen(["sleep", "120"])) as process:
        yield process


def test_the_command_s_end_of_the_pipe_closing_ends_the_watched_process(
    sleeper: subprocess.Popen[bytes],
) -> None:
    watchdog = start_watchdog(sleeper.pid)
    time.sleep(0.5)  # the watchdog has started and waits
    assert watchdog.poll() is None and sleeper.poll() is None
    assert watchdog.stdin is not None
    watchdog.stdin.close()  # what the kernel does when the command's process ends
    assert sleeper.wait(timeout=20) == -signal.SIGTERM
    assert watchdog.wait(timeout=20) == 0


def test_a_stopped_watchdog_leaves_the_process_alone(sleeper: subprocess.Popen[bytes]) -> None:
    watchdog = start_watchdog(sleeper.pid)
    stop_watchdog(watchdog)
    assert watchdog.poll() is not None
    time.sleep(0.5)
    assert sleeper.poll() is None


def test_sigkill_of_the_command_ends_the_watched_process_through_the_watchdog(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import subprocess, sys, time\n"
        "from flows._watchdog import start_watchdog\n"
        "child = subprocess.Popen(['sleep', '120'])\n"
        "watchdog = start_watchdog(child.pid)\n"
        f"open({str(pids)!r}, 'w').write(f'{{child.pid}} {{watchdog.pid}}')\n"
        "time.sleep(120)\n"
    )
    command = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT)
    try:
        assert wait_for(lambda: pids.exists() and bool(pids.read_text()), 30)
        child, watchdog = map(int, pids.read_text().split())
        assert process_running(child) and process_running(watchdog)
        command.send_signal(signal.SIGKILL)
        command.wait(timeout=10)
        assert wait_for(lambda: not process_running(child), 20), "the orphan outlived its command"
        assert wait_for(lambda: not process_running(watchdog), 20)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        for pid in map(int, pids.read_text().split()) if pids.exists() and pids.read_text() else ():
            if process_running(pid):
                os.kill(pid, signal.SIGKILL)


def test_end_kills_a_process_that_ignores_sigterm_after_the_grace_period() -> None:
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(120)\n",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        assert end(stubborn.pid, process_started(stubborn.pid), grace_s=0.5)
        assert stubborn.wait(timeout=10) == -signal.SIGKILL
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
        stubborn.wait()


def test_end_leaves_a_later_process_with_the_same_pid_and_the_ended_alone(
    sleeper: subprocess.Popen[bytes],
) -> None:
    started = process_started(sleeper.pid)
    if started is None:
        pytest.skip("no /proc: the OS does not tell a process's start time")
    assert not end(sleeper.pid, started + 1)  # another start time: another process than watched
    assert sleeper.poll() is None
    sleeper.terminate()
    sleeper.wait()
    assert not end(sleeper.pid, started)  # ended (and reaped) already: nothing to signal


def test_an_unreaped_zombie_does_not_run(sleeper: subprocess.Popen[bytes]) -> None:
    os.kill(sleeper.pid, signal.SIGKILL)
    assert wait_for(lambda: not process_running(sleeper.pid), 10)  # not waited for: a zombie
    assert sleeper.poll() is not None


def test_the_guard_registers_prefect_s_temporary_server_only_when_prefect_would_start_one() -> None:
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows._flowruns import guard_temporary_server
    from flows._temporary_server import GuardedServer

    saved = SubprocessASGIServer._instances.pop(None, None)
    try:
        with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
            assert guard_temporary_server() is None
            assert None not in SubprocessASGIServer._instances
        with temporary_settings(restore_defaults={PREFECT_API_URL}):
            guarded = guard_temporary_server()
            assert isinstance(guarded, GuardedServer)
            assert SubprocessASGIServer() is guarded  # what Prefect's clients start
            assert guard_temporary_server() is guarded  # once per process
            assert not guarded.running and guarded.watchdogs == []  # nothing started yet
    finally:
        SubprocessASGIServer._instances.pop(None, None)
        if saved is not None:
            SubprocessASGIServer._instances[None] = saved


def test_the_guard_imports_no_prefect_server_when_prefect_would_start_none() -> None:
    """A Prefect profile naming a server: the guard returns before importing Prefect's server
    module (~1.7 s), which nothing else then needs."""
    script = (
        "import sys\n"
        "from prefect.settings import PREFECT_API_URL, temporary_settings\n"
        "from flows._flowruns import guard_temporary_server\n"
        "with temporary_settings(updates={PREFECT_API_URL: 'http://127.0.0.1:9/api'}):\n"
        "    assert guard_temporary_server() is None\n"
        "print('prefect.server.api.server' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
