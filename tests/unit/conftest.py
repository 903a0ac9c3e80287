"""Fixtures shared by the unit tests."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from flows._server import SERVER_SETTINGS


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
