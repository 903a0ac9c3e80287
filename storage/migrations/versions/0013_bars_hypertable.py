"""``bars`` becomes a TimescaleDB hypertable where the extension can be loaded; otherwise nothing.

On PostgreSQL, when ``timescaledb`` is listed in ``pg_available_extensions`` and is either already
installed in the database or in ``shared_preload_libraries`` (TimescaleDB refuses to be created
without it), the extension is created and ``bars`` is converted in place with
``create_hypertable`` on ``ts`` (BIGINT epoch milliseconds, chunks of 30 days; existing rows are
migrated). The columns and the primary key ``(symbol, timeframe, ts)`` stay what
``storage/schema.py`` declares (``create_default_indexes => FALSE``: no extra ``ts`` index), so the
schema check holds either way, and the upserts (``COPY``, ``INSERT ... ON CONFLICT``) work the
same on a hypertable. Everywhere else (SQLite, PostgreSQL without TimescaleDB) this revision
changes nothing and ``bars`` stays a plain table.

Downgrade changes nothing: a hypertable has the columns and key that revision 0010 expects.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK_MS = 30 * 24 * 3600 * 1000  # 30 days of BIGINT epoch milliseconds per chunk


def timescaledb_loadable(bind: sa.Connection) -> bool:
    """Whether ``CREATE EXTENSION timescaledb`` can succeed on ``bind`` (PostgreSQL only)."""
    if bind.dialect.name != "postgresql":
        return False
    available = bind.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).first()
    if available is None:
        return False
    installed = bind.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").first()
    if installed is not None:
        return True
    preload = str(bind.exec_driver_sql("SELECT current_setting('shared_preload_libraries')").scalar_one())
    return "timescaledb" in {name.strip() for name in preload.split(",")}


def upgrade() -> None:
    """Make ``bars`` a hypertable when TimescaleDB can be loaded; otherwise a no-op."""
    bind = op.get_bind()
    if not timescaledb_loadable(bind):
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    op.execute(
        "SELECT create_hypertable('bars', 'ts', "
        f"chunk_time_interval => {CHUNK_MS}::bigint, if_not_exists => TRUE, "
        "migrate_data => TRUE, create_default_indexes => FALSE)"
    )


def downgrade() -> None:
    """Nothing: a hypertable ``bars`` has the same columns and primary key as the plain table."""
