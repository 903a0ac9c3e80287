"""Interrupted ingest runs: ``ingest_runs`` records the host, pid and process start time of the
process running it, and ``interrupted`` joins its statuses (a ``running`` run whose process is
gone).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OLD = "status IN ('running', 'success', 'failed')"
_NEW = "status IN ('running', 'success', 'failed', 'interrupted')"
_CHILDREN = ("validation_results", "quarantine")  # the tables whose ingest_run_id references a run


@contextmanager
def _recreating_runs() -> Iterator[None]:
    """On SQLite the batch operation copies ``ingest_runs`` and drops the old table, which the
    foreign keys of its children forbid (``foreign_keys`` is on and cannot be turned off inside the
    migration's transaction): their references are set aside, cleared, and restored afterwards."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    for child in _CHILDREN:
        op.execute(
            f"CREATE TEMP TABLE _keep_{child} AS "
            f"SELECT id, ingest_run_id FROM {child} WHERE ingest_run_id IS NOT NULL"
        )
        op.execute(f"UPDATE {child} SET ingest_run_id = NULL WHERE ingest_run_id IS NOT NULL")
    yield
    for child in _CHILDREN:
        op.execute(
            f"UPDATE {child} SET ingest_run_id = "
            f"(SELECT k.ingest_run_id FROM _keep_{child} k WHERE k.id = {child}.id) "
            f"WHERE id IN (SELECT id FROM _keep_{child})"
        )
        op.execute(f"DROP TABLE _keep_{child}")


def upgrade() -> None:
    """Add ``host``, ``pid``, ``pid_started`` (NULL on existing rows) and allow ``interrupted``."""
    with _recreating_runs(), op.batch_alter_table("ingest_runs") as batch:
        batch.add_column(sa.Column("host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("pid_started", sa.BigInteger(), nullable=True))
        batch.drop_constraint(op.f("ck_ingest_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_ingest_runs_status"), _NEW)


def downgrade() -> None:
    """Back to three statuses: ``interrupted`` runs become ``failed``; the owner columns are dropped."""
    op.execute("UPDATE ingest_runs SET status = 'failed' WHERE status = 'interrupted'")
    with _recreating_runs(), op.batch_alter_table("ingest_runs") as batch:
        batch.drop_constraint(op.f("ck_ingest_runs_status"), type_="check")
        batch.create_check_constraint(op.f("ck_ingest_runs_status"), _OLD)
        batch.drop_column("pid_started")
        batch.drop_column("pid")
        batch.drop_column("host")
