"""Feature store: feature_builds.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``feature_builds``; existing tables are untouched."""
    op.create_table(
        "feature_builds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("set_name", sa.String(64), nullable=False),
        sa.Column("set_version", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("bars_first", sa.BigInteger(), nullable=False),
        sa.Column("bars_last", sa.BigInteger(), nullable=False),
        sa.Column("bar_count", sa.Integer(), nullable=False),
        sa.Column("bars_checksum", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("columns", sa.JSON(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("built_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feature_builds"),
        sa.UniqueConstraint(
            "set_name", "set_version", "symbol", "timeframe", "bars_checksum", name="uq_feature_builds_input"
        ),
    )
    op.create_index(
        "ix_feature_builds_series_built_at",
        "feature_builds",
        ["set_name", "set_version", "symbol", "timeframe", "built_at"],
    )


def downgrade() -> None:
    """Drop ``feature_builds`` (the Parquet files under the feature store root are left alone)."""
    op.drop_index("ix_feature_builds_series_built_at", table_name="feature_builds")
    op.drop_table("feature_builds")
