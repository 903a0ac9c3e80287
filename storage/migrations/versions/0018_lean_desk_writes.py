"""Fewer pages written per paper-desk transaction: partial indexes and a table without rowids.

Every commit of the desk (a bar's fills and mark, a batch of orders, the broker's acks) writes
each b-tree page it changes to SQLite's write-ahead log; the indexes below touched pages that no
query needs:

* ``orders``: ``ix_orders_account_status`` held every order, so each transition moved its entry
  between the growing range of done orders and the open ones (two leaf pages). It becomes
  ``ix_orders_account_open``, on ``account`` for the open orders only (``status IN ('new',
  'submitted', 'accepted', 'partially_filled')``): what the OMS's recovery reads; an entry is
  written when an order is created and removed when it is done, and an ack (``submitted`` to
  ``accepted``) or a partial fill leaves it as it is. ``ix_orders_parent_id`` indexes bracket
  children only (``parent_id IS NOT NULL``): a plain order writes no entry.
* ``fills``: ``ix_fills_account_symbol`` is dropped (one more page per fill; nothing reads fills
  by symbol but an ad hoc query, which the account's part of ``uq_fills_account_broker_fill_id``
  serves; a symbol's state is its ``positions`` row). ``ix_fills_order_id`` stays.
* ``audit_log``: ``ix_audit_log_action`` leaves out the OMS's per-order actions
  (``order.created``, ``order.transition``, ``order.fill``), the bulk of the log; an order
  transaction wrote one leaf page per action it logged. Queries by those actions scan the log
  by id, as an index on a value most rows share would.
* ``equity_history``: a table without rowid on SQLite (its primary key ``(account, ts)`` is the
  table, one b-tree instead of two). Nothing changes on PostgreSQL but the indexes.

Every row is kept both ways; the downgrade restores every index as it was.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the predicates as storage.schema has them at this revision (a migration never imports the models)
_OPEN = "status IN ('new', 'submitted', 'accepted', 'partially_filled')"
_CHILDREN = "parent_id IS NOT NULL"
_AUDITED = "action NOT IN ('order.created', 'order.transition', 'order.fill')"


def _partial(name: str, table: str, columns: list[str], where: str) -> None:
    op.create_index(name, table, columns, sqlite_where=sa.text(where), postgresql_where=sa.text(where))


def _equity_rowid(with_rowid: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table(
        "equity_history", recreate="always", table_kwargs={"sqlite_with_rowid": with_rowid}
    ):
        pass


def upgrade() -> None:
    """Partial indexes on ``orders`` and ``audit_log``, one index less on ``fills``;
    ``equity_history`` without rowid (SQLite)."""
    op.drop_index("ix_orders_account_status", table_name="orders")
    _partial("ix_orders_account_open", "orders", ["account"], _OPEN)
    op.drop_index("ix_orders_parent_id", table_name="orders")
    _partial("ix_orders_parent_id", "orders", ["parent_id"], _CHILDREN)
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    _partial("ix_audit_log_action", "audit_log", ["action"], _AUDITED)
    op.drop_index("ix_fills_account_symbol", table_name="fills")
    _equity_rowid(False)


def downgrade() -> None:
    """The full indexes and a rowid ``equity_history`` again."""
    _equity_rowid(True)
    op.create_index("ix_fills_account_symbol", "fills", ["account", "symbol"])
    op.drop_index("ix_audit_log_action", table_name="audit_log")
    op.create_index("ix_audit_log_action", "audit_log", ["action"])
    op.drop_index("ix_orders_parent_id", table_name="orders")
    op.create_index("ix_orders_parent_id", "orders", ["parent_id"])
    op.drop_index("ix_orders_account_open", table_name="orders")
    op.create_index("ix_orders_account_status", "orders", ["account", "status"])
