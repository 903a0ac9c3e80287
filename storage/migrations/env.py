"""Alembic environment of the FKS database.

Three ways in:

* :func:`storage.migrate` passes its open connection in ``config.attributes["connection"]``;
  the migrations run on it, inside the caller's transaction.
* The ``alembic`` command line (``alembic.ini`` at the repository root) connects to
  ``-x url=...``, else ``sqlalchemy.url`` from the ini file, else the FKS settings' ``db_url``,
  through :func:`storage.db.make_engine` so that SQLite gets the same pragmas.
* Offline mode (``alembic upgrade head --sql``) renders the SQL for the same URL: PostgreSQL's
  whole history; on SQLite the migrations that rebuild a table by reading it from the live
  database (0012, 0017, 0018, 0019) stop there with Alembic's message (run them online:
  ``fks`` migrates at start, or ``alembic upgrade head``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from storage.schema import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from config.settings import get_settings

    return get_settings().db_url


from storage.db import VERSION_TABLE  # noqa: E402


def _transactional_ddl(connection: Connection) -> None:
    """Open the SQLite transaction now: Python's sqlite3 begins one only before a data change, so
    the DDL of a migration that runs before any (a table rebuilt by a downgrade, say) would commit
    by itself, and a later step's failure would leave it half done. With ``BEGIN`` first, every
    step of an upgrade or downgrade commits or rolls back with the caller's transaction."""
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if raw is not None and not raw.in_transaction:
        raw.execute("BEGIN")


def _configure(connection: Connection) -> None:
    _transactional_ddl(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Render the migrations as SQL for the configured URL without connecting."""
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        compare_type=True,
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on a fresh engine for the configured URL."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    from storage.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.begin() as conn:
            _configure(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
