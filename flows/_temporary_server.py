"""Prefect's temporary server, ended with the command that started it, SIGKILL included.

Without ``PREFECT_API_URL``, Prefect starts a temporary server in a subprocess at a command's first
API call and ends it from ``atexit`` (FKS turns SIGTERM and SIGHUP into an exit for that too, see
:func:`flows._server.prepare`). A SIGKILL skips ``atexit``: the server stayed behind, holding its
port and its database. :func:`flows._flowruns.guard_temporary_server`, called where a command
is about to run its flows, makes the server Prefect will start in this process a
:class:`GuardedServer`: the same server, started the same way and at the same moment, with a
:mod:`flows._watchdog` next to it that ends it when this process is gone.

Imported only when Prefect would start a temporary server: Prefect's server module, imported
here, takes ~1.7 s, which Prefect pays then anyway.
"""

from __future__ import annotations

import subprocess
from typing import Any

from prefect.server.api.server import SubprocessASGIServer

from flows._watchdog import start_watchdog, stop_watchdog

__all__ = ["GuardedServer"]


class GuardedServer(SubprocessASGIServer):
    """``SubprocessASGIServer`` with a watchdog per server process it starts (Prefect starts
    another when the first found its port taken)."""

    def __init__(self, port: int | None = None) -> None:
        super().__init__(port)
        if not hasattr(self, "watchdogs"):
            self.watchdogs: list[subprocess.Popen[bytes]] = []

    def _run_uvicorn_command(self) -> subprocess.Popen[Any]:
        process = super()._run_uvicorn_command()
        self.watchdogs.append(start_watchdog(process.pid))
        return process

    def stop(self) -> None:
        """Stop the watchdogs, then the server as Prefect does."""
        while self.watchdogs:
            stop_watchdog(self.watchdogs.pop())
        super().stop()
