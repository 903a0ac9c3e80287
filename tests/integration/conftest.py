"""Stores for the repository tests: each test gets a fresh SQLite file and, when
``TEST_POSTGRES_URL`` names a PostgreSQL server (a role that may create databases, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; `.ci/run` starts one), a fresh
PostgreSQL database too. Below them, the loopback servers and adapters of the provider tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from config.providers import ProviderPolicy
from config.settings import Settings
from storage import make_engine, open_store
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


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated by :func:`storage.open_store` once per session (its log checkpointed
    into it): what a fresh store is, to copy."""
    path = tmp_path_factory.mktemp("template") / "fks.db"
    eng = open_store(f"sqlite:///{path}")
    with eng.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    eng.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[Callable[[str], None]]:
    """``make(url)``: the (empty) database of ``url``, on the ``TEST_POSTGRES_URL`` server, made
    anew as a copy of a database migrated by :func:`storage.open_store` once per session
    (``CREATE DATABASE .. TEMPLATE``); the template is dropped when the session ends."""
    base = os.environ.get("TEST_POSTGRES_URL", "")
    if not base:
        pytest.skip("TEST_POSTGRES_URL is not set")
    admin = make_engine(base).execution_options(isolation_level="AUTOCOMMIT")
    template = f"fks_template_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {template}")
    open_store(make_url(base).set(database=template).render_as_string(hide_password=False)).dispose()

    def make(url: str) -> None:
        name = make_url(url).database
        assert name is not None and name.isidentifier()
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name}")
            conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {template}")

    try:
        yield make
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
        admin.dispose()


def _from_template(url: str, request: pytest.FixtureRequest) -> None:
    """Make the store of ``url`` (a SQLite file not made yet, or an empty PostgreSQL database) a
    copy of the session's migrated template (migrating each test's store anew cost ~0.15 s on
    SQLite and ~0.5 s on PostgreSQL). A SQLite file that exists already is left as it is."""
    target = make_url(url)
    if target.get_backend_name() != "sqlite":
        request.getfixturevalue("postgres_template")(url)
        return
    assert target.database is not None
    path = Path(target.database)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(request.getfixturevalue("sqlite_template"), path)


@pytest.fixture
def engine(url: str, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated, empty store on ``url`` (a copy of the session's template, opened by
    :func:`storage.open_store` as any store is: it finds the schema at head)."""
    _from_template(url, request)
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
def store(settings: Settings, request: pytest.FixtureRequest) -> Iterator[Engine]:
    """The test's migrated SQLite store (a copy of the session's template)."""
    _from_template(settings.db_url, request)
    engine = open_store(settings.db_url)
    try:
        yield engine
    finally:
        engine.dispose()
