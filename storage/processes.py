"""Who a process is and whether it still runs, from the OS (standard library only: the CLI's
start-up, :mod:`flows._server`, and the watchdog process, :mod:`flows._watchdog`, import it
without the rest of the package).

A process is named by its pid and its start time (clock ticks since boot, Linux ``/proc``), so a
later process given the same pid is told apart. A zombie (ended, not yet reaped by its parent:
e.g. a killed command orphaned to a container's init that never reaps) does not run.
"""

from __future__ import annotations

import os

__all__ = ["process_running", "process_started"]


def _stat_fields(pid: int) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            stat = handle.read()
        return stat[stat.rindex(b")") + 2 :].split()  # the name (field 2) may hold ')' and spaces
    except (OSError, ValueError):
        return None


def process_started(pid: int) -> int | None:
    """Process ``pid``'s start time in clock ticks since boot (Linux ``/proc``), else None."""
    fields = _stat_fields(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (ValueError, IndexError):
        return None


def process_running(pid: int, started: int | None = None) -> bool:
    """Whether process ``pid`` runs on this host and, when ``started`` is known and the OS tells,
    is the process that started then, not a later one given the same pid. A zombie does not run."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by another user
        pass
    except OSError:
        return False
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc: the signal check is all the OS tells
    if fields[:1] == [b"Z"]:
        return False
    try:
        return started is None or int(fields[19]) == started
    except (ValueError, IndexError):
        return True
