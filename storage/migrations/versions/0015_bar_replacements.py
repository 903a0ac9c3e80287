"""``bar_replacements``: every stored bar replaced by another source's different values (the
provisional bars a fallback provider wrote, healed from the asset's primary).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``bar_replacements`` and its ``(symbol, timeframe, ts)`` index."""
    op.create_table(
        "bar_replacements",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("timeframe", sa.String(8), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("old_source", sa.Text(), nullable=False),
        sa.Column("new_source", sa.Text(), nullable=False),
        sa.Column("old_open", sa.Float(), nullable=False),
        sa.Column("old_high", sa.Float(), nullable=False),
        sa.Column("old_low", sa.Float(), nullable=False),
        sa.Column("old_close", sa.Float(), nullable=False),
        sa.Column("old_volume", sa.Float(), nullable=False),
        sa.Column("new_close", sa.Float(), nullable=False),
        sa.Column("max_rel_diff", sa.Float(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("batch_id", sa.String(64), nullable=True),
        sa.Column("replaced_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bar_replacements"),
    )
    op.create_index(
        "ix_bar_replacements_symbol_timeframe_ts", "bar_replacements", ["symbol", "timeframe", "ts"]
    )


def downgrade() -> None:
    """Drop ``bar_replacements``."""
    op.drop_index("ix_bar_replacements_symbol_timeframe_ts", table_name="bar_replacements")
    op.drop_table("bar_replacements")
