"""Stores for the repository tests: each test gets a fresh SQLite file and, when
``TEST_POSTGRES_URL`` names a PostgreSQL server (a role that may create databases, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; `.ci/run` starts one), a fresh
PostgreSQL database too. Below them, the loopback servers and adapters of the provider tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from config.providers import ProviderPolicy
from config.settings import Settings
from storage import open_store
from tests.fixture_server import FixtureServer, no_route
from tests.provider_fakes import Loopback, build_at


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh, empty database (nothing migrated): a SQLite file, or a PostgreSQL
    database from ``fresh_postgres`` (skipped without ``TEST_POSTGRES_URL``)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'fks.db'}"
    fresh: Callable[[str], str] = request.getfixturevalue("fresh_postgres")
    return fresh("fks_test")


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """A migrated, empty store."""
    eng = open_store(url)
    try:
        yield eng
    finally:
        eng.dispose()


# -- loopback servers playing providers (see tests/provider_fakes.py) -----------------------------


@pytest.fixture(scope="module")
def shared_server() -> Iterator[FixtureServer]:
    """One loopback server per test module (stopping a server takes half a second)."""
    with FixtureServer(no_route) as running:
        yield running


@pytest.fixture
def server(shared_server: FixtureServer) -> FixtureServer:
    """The module's loopback server with no requests recorded, no faults queued and no route."""
    return shared_server.reset(no_route)


@pytest.fixture
def sleeps() -> list[float]:
    """Delays a client asked for (recorded instead of slept)."""
    return []


@pytest.fixture
def adapters(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``adapters(cls, url, policy, **kw)``: :func:`tests.provider_fakes.build_at` with this test's
    data directory; every adapter built is closed after the test."""
    built: list[Any] = []

    def build(cls: type[Any], url: str, policy: ProviderPolicy, **kw: Any) -> Any:
        built.append(build_at(cls, url, policy, data_dir=tmp_path, **kw))
        return built[-1]

    yield build
    for adapter in built:
        adapter.close()


@pytest.fixture(scope="module")
def loopback() -> Iterator[Loopback]:
    """One set of loopback servers per test module, for the provider manager's tests."""
    with contextlib.ExitStack() as stack:
        yield Loopback({n: stack.enter_context(FixtureServer(no_route)) for n in Loopback.NAMES})


@pytest.fixture
def net(loopback: Loopback) -> Loopback:
    """The module's loopback servers, playing nothing until a test says what."""
    return loopback


@pytest.fixture
def store(settings: Settings) -> Iterator[Engine]:
    """The test's migrated SQLite store."""
    engine = open_store(settings.db_url)
    try:
        yield engine
    finally:
        engine.dispose()
