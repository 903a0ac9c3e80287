"""How the flow runs of an ``fks`` command (and of ``python -m flows.<name>``) meet Prefect.

A command that runs a flow (it has imported Prefect, through its flow module) runs it inside
:func:`command_flow_runs`; so does :func:`flows._main.run_from_argv`:

* **No heartbeats.** A sync flow run's heartbeat thread (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``)
  sleeps in 1 s steps and is joined when the run ends: every command paid 0-1 s (0.5 s on average)
  after its work. Heartbeats serve Prefect's zombie-run automation; a command is watched by FKS
  instead (below). Runs started by a worker (``fks deploy``) keep Prefect's heartbeats.
* **Tagged with the command's process**: :data:`COMMAND_TAG` and ``fks-cli-process:HOST:PID:START``
  (the process's start time tells a reused pid apart).
* **A command killed before its run ended** (kill -9, a crash of the machine) leaves its flow run
  ``Running``; the next flow command using the same server marks such runs of this host
  ``Crashed``, with a message naming the process (:func:`crash_dead_command_runs`). Runs of other
  hosts are never touched. With Prefect's temporary server there is no next server to ask: the
  runs stay in that server's database as they were, and the server itself is ended by a watchdog
  (:func:`guard_temporary_server`).

Only the standard library is imported at module level; Prefect and the store are imported when a
flow command enters :func:`command_flow_runs`.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows._temporary_server import GuardedServer

COMMAND_TAG = "fks-cli"
"""The tag of every flow run an ``fks`` command starts."""
PROCESS_TAG_PREFIX = "fks-cli-process:"
_OPEN_STATES = ["PENDING", "RUNNING"]
_CONFIGURED_HEARTBEAT: ContextVar[tuple[int | None] | None] = ContextVar("fks_heartbeat", default=None)


def configured_heartbeat_s() -> int | None:
    """Prefect's flow-run heartbeat frequency as configured (``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``:
    what a worker's runs send), also inside :func:`command_flow_runs`, which turns it off for the
    command's own runs."""
    saved = _CONFIGURED_HEARTBEAT.get()
    if saved is not None:
        return saved[0]
    from prefect.settings import get_current_settings

    return get_current_settings().flows.heartbeat_frequency


def process_tag(host: str, pid: int, started: int | None) -> str:
    """``fks-cli-process:HOST:PID:START`` (START empty when the OS does not tell)."""
    return f"{PROCESS_TAG_PREFIX}{host}:{pid}:{'' if started is None else started}"


def parse_process_tag(tag: str) -> tuple[str, int, int | None] | None:
    """(host, pid, start) of a :func:`process_tag`, None for any other tag."""
    if not tag.startswith(PROCESS_TAG_PREFIX):
        return None
    host, _, rest = tag[len(PROCESS_TAG_PREFIX) :].rpartition(":")
    host, _, pid = host.rpartition(":")
    try:
        return host, int(pid), int(rest) if rest else None
    except ValueError:
        return None


def _post(url: str, body: dict[str, Any], timeout: float) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        text = response.read()
    return json.loads(text) if text else None


def crash_dead_command_runs(api_url: str, timeout: float = 5.0) -> list[str]:
    """Mark ``Crashed`` the open (Pending, Running) flow runs of ``fks`` commands of this host
    whose process is gone; return their ids. Runs without a process tag or of other hosts are
    left alone."""
    from storage.processes import process_running
    from storage.runs import current_process

    here = current_process().host
    body = {
        "flow_runs": {"state": {"type": {"any_": _OPEN_STATES}}, "tags": {"all_": [COMMAND_TAG]}},
        "limit": 200,
    }
    crashed: list[str] = []
    for run in _post(f"{api_url}/flow_runs/filter", body, timeout) or []:
        owner = next((p for p in map(parse_process_tag, run.get("tags") or []) if p), None)
        if owner is None:
            continue
        host, pid, started = owner
        if host != here or process_running(pid, started):
            continue
        state = {
            "type": "CRASHED",
            "name": "Crashed",
            "message": f"the fks command that ran it (pid {pid} on {host}) ended before the run did",
        }
        _post(f"{api_url}/flow_runs/{run['id']}/set_state", {"state": state, "force": True}, timeout)
        crashed.append(str(run["id"]))
    return crashed


def guard_temporary_server() -> GuardedServer | None:
    """Register a :class:`flows._temporary_server.GuardedServer` as this process's temporary
    Prefect server (it starts when Prefect first needs it, as before) and return it. None, with
    nothing imported or changed, when Prefect would start no temporary server
    (``PREFECT_API_URL`` is set, also in a Prefect profile, or ephemeral servers are off); None
    also when another server is registered already."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    if PREFECT_API_URL.value() or not PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    from flows._temporary_server import GuardedServer

    current = SubprocessASGIServer._instances.get(None)
    if current is None:
        return GuardedServer()  # registers itself as the port-less instance Prefect's clients use
    return current if isinstance(current, GuardedServer) else None


@contextmanager
def command_flow_runs() -> Iterator[None]:
    """Run a command's flows without heartbeats, tagged with this process, after marking the runs
    of dead commands ``Crashed`` on the server named by ``PREFECT_API_URL`` (see the module);
    without one, the temporary server Prefect starts is watched
    (:func:`guard_temporary_server`).

    A failure to reach the server here is left to the flow run, which reports it."""
    from prefect import tags
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings, temporary_settings

    from storage.runs import current_process

    me = current_process()
    api_url = os.environ.get("PREFECT_API_URL")
    if api_url:
        with suppress(OSError, ValueError):
            crash_dead_command_runs(api_url.rstrip("/"))
    else:  # Prefect's temporary server, if it starts one, ends with this process even on SIGKILL
        guard_temporary_server()
    saved = _CONFIGURED_HEARTBEAT.set((get_current_settings().flows.heartbeat_frequency,))
    with ExitStack() as stack:
        stack.callback(_CONFIGURED_HEARTBEAT.reset, saved)
        stack.enter_context(temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))
        stack.enter_context(tags(COMMAND_TAG, process_tag(me.host, me.pid, me.started)))
        yield
