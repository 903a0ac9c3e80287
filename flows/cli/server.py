"""``fks server start|stop|status``: one local Prefect server in the background that every later
``fks`` command uses (and whose UI shows their runs), instead of a temporary server per command.

``start`` launches ``prefect server start`` in its own session (it outlives the command), with its
log at ``<data_dir>/prefect/server.log``, waits until ``/api/health`` answers and records the server
in ``<data_dir>/prefect/server.json`` (URL, pid, process start time, host). Every later command
(:func:`flows._server.prepare`, called by :func:`flows.cli.main` and by ``python -m flows.<name>``)
sets ``PREFECT_API_URL`` to that URL when the recorded process still runs and its port answers;
``PREFECT_API_URL`` set in the environment wins. Without a server a command that runs a flow starts
Prefect's temporary server, and ``prepare`` makes sure it is ended on the exits Python can catch
(SIGTERM and SIGHUP included). The server's state, start and stop are :mod:`flows._server`'s.

Only the standard library, ``typer`` and ``rich`` are imported at module level: commands that run
no flow must not pay for Prefect.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Annotated, Any

import typer

from flows._server import (
    LOG_FILE,
    read_state,
    running_server,
    server_dir,
    server_healthy,
    start_server,
    stop_server,
)
from flows.cli._ui import EXIT_BAD_INPUT, EXIT_UNEXPECTED, err, fail, out

server_app = typer.Typer(
    help="One local Prefect server in the background that every fks command uses (and its UI).",
    no_args_is_help=True,
)


@server_app.command("start")
def start_command() -> None:
    """Start the Prefect server in the background (UI included); later fks commands use it."""
    from flows.cli._ui import run_guarded

    def run() -> None:
        from config.settings import get_settings

        settings = get_settings()
        already = running_server(settings.data_dir)
        if already is not None:
            out.print(
                f"The Prefect server already runs at {already.url} (UI {already.ui}, pid {already.pid})."
            )
            return
        with err.status("starting the Prefect server"):
            state = start_server(settings)
        out.print(
            f"The Prefect server runs at {state.url} (pid {state.pid}); UI: {state.ui}\n"
            f"Every fks command now uses it; its log: {state.log}. Stop it with `fks server stop`."
        )

    run_guarded(run, (RuntimeError, EXIT_UNEXPECTED))


@server_app.command("stop")
def stop_command() -> None:
    """Stop the background Prefect server."""
    from config.settings import get_settings

    data_dir = get_settings().data_dir
    state = read_state(data_dir)
    if state is not None and state.host != socket.gethostname():
        raise fail(f"the recorded server runs on {state.host}; stop it there", EXIT_BAD_INPUT)
    stopped = stop_server(data_dir)
    if stopped is None:
        out.print("No Prefect server was running.")
    else:
        out.print(f"Stopped the Prefect server (pid {stopped.pid}, {stopped.url}).")


@server_app.command("status")
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
) -> None:
    """Whether the background Prefect server runs, its API URL, its UI address and what commands use."""
    from config.settings import get_settings

    data_dir = get_settings().data_dir
    state = running_server(data_dir)
    env_url = os.environ.get("PREFECT_API_URL")
    report: dict[str, Any] = {
        "running": state is not None,
        "url": state.url if state else None,
        "ui": state.ui if state else None,
        "pid": state.pid if state else None,
        "log": state.log if state else str(server_dir(data_dir) / LOG_FILE),
        "healthy": server_healthy(state.url) if state else False,
        "commands_use": env_url or (state.url if state else "a temporary server per command"),
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return
    if state is None:
        out.print("The Prefect server is not running: start it with `fks server start`.")
    else:
        out.print(
            f"The Prefect server runs (pid {state.pid}, since {state.started_at}, "
            f"{'healthy' if report['healthy'] else 'not answering'}).\n"
            f"API: {state.url}\nUI:  {state.ui}\nLog: {state.log}"
        )
    if env_url and (state is None or env_url != state.url):
        out.print(f"PREFECT_API_URL is set in the environment: commands use {env_url}.")
