"""A watchdog that ends a process when the command that started it dies without ending it.

``python -m flows._watchdog PID [START]`` blocks reading its standard input, a pipe whose write end
only the command holds (:func:`start_watchdog`). The kernel closes that end when the command's
process ends, however it ends, SIGKILL included; the watchdog then reads end-of-file and ends
process ``PID`` (SIGTERM, then SIGKILL after :data:`GRACE_S`) if it still runs and, where the OS
tells (Linux ``/proc``), is still the process that started at ``START`` (clock ticks since boot),
not a later one given the same pid. A command that ends the process itself stops its watchdog
first (:func:`stop_watchdog`).

FKS uses it for Prefect's temporary server (:mod:`flows._temporary_server`): Prefect ends that
server from ``atexit``, which a SIGKILL skips. Only the standard library is imported: the
watchdog is a small process, started next to every temporary server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.processes import process_running, process_started

GRACE_S = 10.0
"""Seconds the watched process gets to end after SIGTERM before it is killed."""

_ROOT = Path(__file__).resolve().parent.parent


def end(pid: int, started: int | None, grace_s: float = GRACE_S) -> bool:
    """End process ``pid`` (see the module); True when it was running and was signalled."""
    if not process_running(pid, started):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not process_running(pid, started):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def start_watchdog(pid: int) -> subprocess.Popen[bytes]:
    """A watchdog for process ``pid``, tied to this process by its standard input (keep the
    returned ``Popen``: closing its ``stdin`` sets the watchdog off). In a session of its own, so
    that a Ctrl-C at the terminal does not end it before the command has cleaned up."""
    started = process_started(pid)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen(
        [sys.executable, "-m", "flows._watchdog", str(pid), "" if started is None else str(started)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )


def stop_watchdog(watchdog: subprocess.Popen[bytes]) -> None:
    """Stop ``watchdog`` without it ending its process (the command ends that itself)."""
    if watchdog.poll() is None:
        watchdog.terminate()
        try:
            watchdog.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()
    if watchdog.stdin is not None:
        watchdog.stdin.close()


def main(argv: list[str] | None = None) -> int:
    """Wait for end-of-file on standard input, then end the process named by ``argv``."""
    args = sys.argv[1:] if argv is None else argv
    pid, started = int(args[0]), (int(args[1]) if len(args) > 1 and args[1] else None)
    for name in ("SIGINT", "SIGHUP"):  # only the pipe, or SIGTERM from the command, ends the watch
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    while os.read(0, 4096):
        pass
    end(pid, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
