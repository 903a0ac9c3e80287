"""The paper desk's cycles: ``desk_cycles`` (the cursor of each account), ``desk_targets`` (what
each cycle decided per symbol) and ``paper_venues`` (the paper broker's saved state).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the three desk tables; existing tables are untouched."""
    op.create_table(
        "desk_cycles",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("finished_at", sa.BigInteger(), nullable=False),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("refusals", sa.Integer(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.name"], name=op.f("fk_desk_cycles_account_accounts")),
        sa.PrimaryKeyConstraint("account", "ts", name="pk_desk_cycles"),
    )
    op.create_table(
        "desk_targets",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        sa.Column("forecast", sa.Float(), nullable=True),
        sa.Column("prob_up", sa.Float(), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("account", "ts", "symbol", name="pk_desk_targets"),
    )
    op.create_table(
        "paper_venues",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("as_of", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("account", name="pk_paper_venues"),
    )


def downgrade() -> None:
    """Drop the three desk tables."""
    op.drop_table("paper_venues")
    op.drop_table("desk_targets")
    op.drop_table("desk_cycles")
