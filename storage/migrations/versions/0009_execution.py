"""Paper execution: accounts, orders, fills, positions, equity history and the kill switch
(tables ``accounts``, ``orders``, ``fills``, ``positions``, ``equity_history``, ``trading_state``).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the enum values as of this revision (storage.schema may grow later ones).
_STATUSES = "'new', 'submitted', 'accepted', 'partially_filled', 'filled', 'rejected', 'cancelled', 'expired'"
_TYPES = "'market', 'limit', 'stop', 'stop_limit'"
_TIMES_IN_FORCE = "'gtc', 'day', 'ioc'"
_SIDES = "'buy', 'sell'"


def upgrade() -> None:
    """Create the six execution tables; existing tables are untouched."""
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("base_currency", sa.String(8), nullable=False),
        sa.Column("initial_cash", sa.Float(), nullable=False),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("initial_cash >= 0", name=op.f("ck_accounts_initial_cash")),
        sa.PrimaryKeyConstraint("name", name="pk_accounts"),
    )
    op.create_table(
        "orders",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("time_in_force", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("filled_quantity", sa.Float(), nullable=False),
        sa.Column("avg_fill_price", sa.Float(), nullable=True),
        sa.Column("limit_price", sa.Float(), nullable=True),
        sa.Column("stop_price", sa.Float(), nullable=True),
        sa.Column("take_profit", sa.Float(), nullable=True),
        sa.Column("stop_loss", sa.Float(), nullable=True),
        sa.Column("parent_id", sa.String(64), nullable=True),
        sa.Column("oco_group", sa.String(64), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reject_code", sa.String(64), nullable=True),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("model", sa.String(128), nullable=True),
        sa.Column("model_version", sa.String(32), nullable=True),
        sa.Column("confidence", sa.Float(), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_orders_status")),
        sa.CheckConstraint(f"type IN ({_TYPES})", name=op.f("ck_orders_type")),
        sa.CheckConstraint(f"time_in_force IN ({_TIMES_IN_FORCE})", name=op.f("ck_orders_time_in_force")),
        sa.CheckConstraint(f"side IN ({_SIDES})", name=op.f("ck_orders_side")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_orders_quantity")),
        sa.CheckConstraint(
            "filled_quantity >= 0 AND filled_quantity <= quantity", name=op.f("ck_orders_filled_quantity")
        ),
        sa.ForeignKeyConstraint(["account"], ["accounts.name"], name=op.f("fk_orders_account_accounts")),
        sa.ForeignKeyConstraint(["parent_id"], ["orders.id"], name=op.f("fk_orders_parent_id_orders")),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        sa.UniqueConstraint("account", "client_order_id", name="uq_orders_account_client_order_id"),
    )
    op.create_index("ix_orders_account_status", "orders", ["account", "status"])
    op.create_index("ix_orders_parent_id", "orders", ["parent_id"])
    op.create_table(
        "fills",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("side", sa.String(4), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("price", sa.Float(), nullable=False),
        sa.Column("fee", sa.Float(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("broker_fill_id", sa.String(128), nullable=False),
        sa.Column("recorded_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(f"side IN ({_SIDES})", name=op.f("ck_fills_side")),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_fills_quantity")),
        sa.CheckConstraint("price > 0", name=op.f("ck_fills_price")),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_fills_order_id_orders")),
        sa.ForeignKeyConstraint(["account"], ["accounts.name"], name=op.f("fk_fills_account_accounts")),
        sa.PrimaryKeyConstraint("id", name="pk_fills"),
        sa.UniqueConstraint("broker_fill_id", name="uq_fills_broker_fill_id"),
    )
    op.create_index("ix_fills_order_id", "fills", ["order_id"])
    op.create_index("ix_fills_account_symbol", "fills", ["account", "symbol"])
    op.create_table(
        "positions",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("symbol", sa.String(32), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("avg_cost", sa.Float(), nullable=False),
        sa.Column("realised_pnl", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["account"], ["accounts.name"], name=op.f("fk_positions_account_accounts")),
        sa.PrimaryKeyConstraint("account", "symbol", name="pk_positions"),
    )
    op.create_table(
        "equity_history",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("cash", sa.Float(), nullable=False),
        sa.Column("market_value", sa.Float(), nullable=False),
        sa.Column("equity", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account"], ["accounts.name"], name=op.f("fk_equity_history_account_accounts")
        ),
        sa.PrimaryKeyConstraint("account", "ts", name="pk_equity_history"),
    )
    op.create_table(
        "trading_state",
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("halted", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("halted IN (0, 1)", name=op.f("ck_trading_state_halted")),
        sa.PrimaryKeyConstraint("account", name="pk_trading_state"),
    )


def downgrade() -> None:
    """Drop the six execution tables (children first); every other table is untouched."""
    op.drop_table("trading_state")
    op.drop_table("equity_history")
    op.drop_table("positions")
    op.drop_index("ix_fills_account_symbol", table_name="fills")
    op.drop_index("ix_fills_order_id", table_name="fills")
    op.drop_table("fills")
    op.drop_index("ix_orders_parent_id", table_name="orders")
    op.drop_index("ix_orders_account_status", table_name="orders")
    op.drop_table("orders")
    op.drop_table("accounts")
