"""Initial schema: bars, assets, ingest_runs.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``bars`` (WITHOUT ROWID on SQLite), ``assets`` and ``ingest_runs``."""
    op.create_table(
        "bars",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("open", sa.Float(), nullable=False),
        sa.Column("high", sa.Float(), nullable=False),
        sa.Column("low", sa.Float(), nullable=False),
        sa.Column("close", sa.Float(), nullable=False),
        sa.Column("volume", sa.Float(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("ingested_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "ts", name="pk_bars"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "assets",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("asset_class", sa.String(16), nullable=False),
        sa.Column("calendar", sa.String(64), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("default_source", sa.String(64), nullable=False),
        sa.Column("source_options", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name="pk_assets"),
    )
    op.create_table(
        "ingest_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("requested", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows_received", sa.Integer(), nullable=True),
        sa.Column("rows_inserted", sa.Integer(), nullable=True),
        sa.Column("rows_updated", sa.Integer(), nullable=True),
        sa.Column("rows_unchanged", sa.Integer(), nullable=True),
        sa.Column("first_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_ts", sa.BigInteger(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.BigInteger(), nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=True),
        sa.CheckConstraint("status IN ('running', 'success', 'failed')", name=op.f("ck_ingest_runs_status")),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_runs"),
    )
    op.create_index("ix_ingest_runs_batch_id", "ingest_runs", ["batch_id"])
    op.create_index("ix_ingest_runs_symbol_timeframe", "ingest_runs", ["symbol", "timeframe"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index("ix_ingest_runs_symbol_timeframe", table_name="ingest_runs")
    op.drop_index("ix_ingest_runs_batch_id", table_name="ingest_runs")
    op.drop_table("ingest_runs")
    op.drop_table("assets")
    op.drop_table("bars")
