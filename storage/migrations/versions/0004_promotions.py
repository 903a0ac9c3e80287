"""Model promotion gate: promotions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``promotions``; existing tables are untouched."""
    op.create_table(
        "promotions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_name", sa.String(256), nullable=False),
        sa.Column("challenger_version", sa.String(32), nullable=False),
        sa.Column("champion_version", sa.String(32), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("primary_metric", sa.String(64), nullable=True),
        sa.Column("challenger_value", sa.Float(), nullable=True),
        sa.Column("champion_value", sa.Float(), nullable=True),
        sa.Column("baseline_name", sa.String(64), nullable=True),
        sa.Column("baseline_value", sa.Float(), nullable=True),
        sa.Column("window_start", sa.BigInteger(), nullable=True),
        sa.Column("window_end", sa.BigInteger(), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("decided_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "decision IN ('promoted', 'refused', 'forced', 'rolled_back')",
            name=op.f("ck_promotions_decision"),
        ),
        sa.PrimaryKeyConstraint("id", name="pk_promotions"),
    )
    op.create_index("ix_promotions_model_name", "promotions", ["model_name"])


def downgrade() -> None:
    """Drop ``promotions`` (the MLflow registry's aliases and tags are left alone)."""
    op.drop_index("ix_promotions_model_name", table_name="promotions")
    op.drop_table("promotions")
