"""Stores for the repository tests: each test gets a fresh SQLite file and, when
``TEST_POSTGRES_URL`` names a PostgreSQL server (a role that may create databases, e.g.
``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``; `.ci/run` starts one), a fresh
PostgreSQL database too."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from storage import make_engine, open_store

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database (nothing migrated)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'fks.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip("set TEST_POSTGRES_URL to run the store tests on PostgreSQL too")
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"fks_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    """A migrated, empty store."""
    eng = open_store(url)
    try:
        yield eng
    finally:
        eng.dispose()
