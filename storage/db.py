"""Engines for the FKS database and the migrations that shape it.

The database is a SQLite file by default (``sqlite:///data/fks.db``) or PostgreSQL by URL. The
schema is created and changed only by Alembic migrations (``storage/migrations``): call
:func:`open_store` (or :func:`make_engine` then :func:`migrate`) before using the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError, ProgrammingError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Applied to every SQLite connection; benchmarks reuse them so that anchors run on equal terms.
# Durability: WAL with synchronous=NORMAL syncs the log at checkpoints, not at every commit. A
# committed transaction survives the process being killed (kill -9: the paper desk's crash test)
# because the WAL is in the OS's page cache; a power loss or an OS crash may lose the last commits
# (never corrupt the file). That is the usual trade for an embedded store; for more, PostgreSQL.
SQLITE_PRAGMAS: tuple[str, ...] = (
    "PRAGMA foreign_keys=ON",
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=30000",
)


# Our own name for Alembic's version table: Optuna's RDB storage keeps its studies in this database
# and runs its own Alembic migrations with the default name `alembic_version`; sharing would break both.
VERSION_TABLE = "fks_alembic_version"
MIGRATION_LOCK_KEY = 0x464B530001
"""PostgreSQL advisory lock key held while FKS migrates a database."""


def _set_sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for pragma in SQLITE_PRAGMAS:
            cursor.execute(pragma)
    finally:
        cursor.close()


def make_engine(url: str) -> Engine:
    """Create a SQLAlchemy engine for ``url`` (``sqlite:///path.db`` or ``postgresql+psycopg://...``).

    For a SQLite file the parent folder is created, and every connection gets
    ``foreign_keys=ON``, ``journal_mode=WAL``, ``synchronous=NORMAL`` and ``busy_timeout=30000``
    (milliseconds a writer waits for a lock). Nothing is connected until the engine is used.

    Raises:
        ValueError: when ``url`` is not a valid SQLAlchemy URL.
        sqlalchemy.exc.NoSuchModuleError: when the URL names a driver that is not installed.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError with a terse message
        raise ValueError(f"invalid database URL {url!r}: {exc}; e.g. sqlite:///data/fks.db") from None
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        in_memory = (
            database in ("", ":memory:") or database.startswith("file::memory:") or "mode=memory" in url
        )
        if not in_memory:
            path = Path(database[5:] if database.startswith("file:") else database).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _alembic_config(engine_url: str | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if engine_url is not None:
        config.set_main_option("sqlalchemy.url", engine_url.replace("%", "%%"))
    return config


def head_revision() -> str:
    """The newest migration this code knows (what :func:`migrate` brings a database to)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    if head is None:  # pragma: no cover - the package ships its migrations
        raise RuntimeError(f"no Alembic migrations found under {MIGRATIONS_DIR}")
    return str(head)


def newest_migration_file() -> str | None:
    """The newest migration by the versions folder's naming rule, without importing Alembic.

    Every migration is ``versions/NNNN_name.py`` with revision ``"NNNN"``, each revising the one
    before (``tests/unit/test_storage.py`` proves the rule and that this equals
    :func:`head_revision`). None when the folder holds no migration.
    """
    numbers = [path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")]
    return max(numbers, default=None)


def _at_head(engine: Engine) -> bool:
    """Whether the database already carries exactly the newest revision (one cheap query; a
    missing version table, a fresh file or any other revision answers False)."""
    head = newest_migration_file()
    try:
        with engine.connect() as connection:
            versions = connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    except (OperationalError, ProgrammingError):  # no version table yet (or unreachable: migrate says so)
        return False
    return head is not None and list(versions) == [head]


def migrate(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest schema (Alembic ``upgrade head``).

    Safe to call on every start: an up-to-date database is left as it is, found by one query of
    the version table without loading Alembic (a command's start pays ~0.2 s less). Migrations run in one
    transaction on the engine's own connection (on PostgreSQL the DDL is transactional too).
    Processes that start at once on a fresh database migrate it once: PostgreSQL takes a
    transaction-scoped advisory lock (:data:`MIGRATION_LOCK_KEY`) first, a SQLite file is
    migrated under an exclusive lock on ``<file>.migrate-lock``.

    Raises:
        sqlalchemy.exc.OperationalError: when the database cannot be reached or written.
        alembic.util.exc.CommandError: when the database carries a revision this code does not know
            (it was migrated by a newer FKS); upgrade FKS or point at another database.
    """
    if _at_head(engine):
        return
    from alembic import command

    config = _alembic_config()
    with _migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """On a SQLite file, an exclusive lock on ``<file>.migrate-lock`` for the duration (so that
    processes starting at once on a fresh file migrate one after the other); nothing otherwise
    (PostgreSQL takes an advisory lock inside the migration's transaction)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or not database or database == ":memory:" or "mode=memory" in database:
        yield
        return
    import fcntl

    path = Path(database[5:] if database.startswith("file:") else database).expanduser()
    with open(f"{path}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_store(url: str) -> Engine:
    """Create an engine for ``url`` and migrate the database to the newest schema.

    Raises:
        ValueError: when ``url`` is not a valid SQLAlchemy URL.
        sqlalchemy.exc.OperationalError: when the database cannot be reached or written.
    """
    engine = make_engine(url)
    migrate(engine)
    return engine
