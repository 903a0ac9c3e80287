"""Moving a test database to a given migration and reading which one it is at."""

from __future__ import annotations

from alembic import command
from sqlalchemy import Engine, text

from storage.db import VERSION_TABLE, _alembic_config


def migrate_to(engine: Engine, revision: str, *, up: bool = True) -> None:
    """Upgrade (or, with ``up=False``, downgrade) the database behind ``engine`` to ``revision``,
    in one transaction."""
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(config, revision)


def db_revision(engine: Engine) -> str:
    """The migration the database behind ``engine`` is at."""
    with engine.connect() as conn:
        return str(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one())
