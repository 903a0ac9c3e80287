"""``market_quotes``: the latest market-wide quote of each coin (rank, price, 24-hour volume,
market cap) from an aggregator, written by ``fks market overview`` and shown by the overview page.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``market_quotes``; existing tables are untouched."""
    op.create_table(
        "market_quotes",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.Column("price", sa.Float(), nullable=True),
        sa.Column("volume_24h", sa.Float(), nullable=True),
        sa.Column("market_cap", sa.Float(), nullable=True),
        sa.Column("percent_change_24h", sa.Float(), nullable=True),
        sa.Column("last_updated", sa.BigInteger(), nullable=True),
        sa.Column("fetched_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source", "symbol", "currency", name="pk_market_quotes"),
    )


def downgrade() -> None:
    """Drop ``market_quotes``."""
    op.drop_table("market_quotes")
