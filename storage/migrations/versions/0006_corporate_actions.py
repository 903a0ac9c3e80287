"""Corporate actions: the splits providers report (table ``corporate_actions``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``corporate_actions``, keyed by (symbol, kind, ex_date); existing tables are untouched."""
    op.create_table(
        "corporate_actions",
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ex_date", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("ratio", sa.Float(), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("ratio > 0", name=op.f("ck_corporate_actions_ratio")),
        sa.PrimaryKeyConstraint("symbol", "kind", "ex_date", name="pk_corporate_actions"),
    )


def downgrade() -> None:
    """Drop ``corporate_actions``; bars and every other table are untouched."""
    op.drop_table("corporate_actions")
