"""Fills of an asset quoted in another currency than the account's are booked in the account's
currency: column ``fills.fx_rate`` (account currency per unit of the asset's quote currency at the
fill, from the last completed FX bar; 1 for an asset in the account's currency), and
``positions.avg_cost_base`` / ``positions.realised_pnl_base`` (the average cost and the realised
P&L in the account's currency: the cost at each fill's rate, so the realised P&L includes the FX
move).

Rows already recorded were booked without conversion (the only case the OMS handled before):
their rate is 1 and their base figures equal ``avg_cost`` and ``realised_pnl``.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the three columns (rate 1, base figures copied from the quote-currency ones)."""
    with op.batch_alter_table("fills") as batch:
        batch.add_column(sa.Column("fx_rate", sa.Float(), nullable=False, server_default="1"))
    with op.batch_alter_table("positions") as batch:
        batch.add_column(sa.Column("avg_cost_base", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("realised_pnl_base", sa.Float(), nullable=False, server_default="0"))
    op.execute("UPDATE positions SET avg_cost_base = avg_cost, realised_pnl_base = realised_pnl")


def downgrade() -> None:
    """Drop the three columns; every other column and row is kept."""
    with op.batch_alter_table("positions") as batch:
        batch.drop_column("realised_pnl_base")
        batch.drop_column("avg_cost_base")
    with op.batch_alter_table("fills") as batch:
        batch.drop_column("fx_rate")
