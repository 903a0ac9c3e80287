"""Fixtures shared by the unit tests."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flows._server import LOG_FILE, SERVER_SETTINGS, ServerState, server_dir, write_state

RecordServer = Callable[..., None]


@pytest.fixture
def handlers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """:func:`flows._server.prepare` installs SIGTERM/SIGHUP handlers and sets the server settings
    (and no analytics) in the environment: start without them, and give pytest its own back."""
    for name in (*SERVER_SETTINGS, "PREFECT_SERVER_ANALYTICS_ENABLED"):
        monkeypatch.delenv(name, raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.fixture
def listening() -> Iterator[int]:
    """A loopback port that answers (a listening socket), as a running server's would."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def _record_server(data_dir: Path, port: int, pid: int, started: int | None, host: str | None = None) -> None:
    state = ServerState(
        url=f"http://127.0.0.1:{port}/api",
        ui=f"http://127.0.0.1:{port}",
        pid=pid,
        pid_started=started,
        host=host or socket.gethostname(),
        port=port,
        log=str(server_dir(data_dir) / LOG_FILE),
        started_at="2026-12-06T00:00:00+0000",
    )
    write_state(data_dir, state)


@pytest.fixture
def record_server() -> RecordServer:
    """Record a background server in a data directory as ``fks server start`` does:
    ``record_server(data_dir, port, pid, pid_started, host=None)``."""
    return _record_server
