"""The promotion record links its evidence: column ``promotions.tearsheet``, the path of the
tearsheet of the backtests the gate decided on (the gate run's own report folder).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable ``tearsheet`` column; rows already recorded keep NULL (no report linked)."""
    with op.batch_alter_table("promotions") as batch:
        batch.add_column(sa.Column("tearsheet", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop ``tearsheet``; every other column and row of ``promotions`` is kept."""
    with op.batch_alter_table("promotions") as batch:
        batch.drop_column("tearsheet")
