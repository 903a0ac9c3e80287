"""Predicates SQLite evaluates cheaply: equalities and inequalities, not ``IN`` lists.

SQLite evaluates a table's CHECK constraints for every row written to it, and a partial index's
predicate too (for an update that changes a column of the predicate, for the old row and the new
one); an ``IN (...)`` or ``NOT IN (...)`` list in either is turned into a temporary table each
time it runs. Measured on this schema in memory: the CHECKs of ``orders`` cost an order's insert
3.9 us and each status change 1.2 us, the ``IN`` of ``ix_orders_account_open`` 1.5 us and 3 us,
the ``NOT IN`` of ``ix_audit_log_action`` 1.2 us an ``audit_log`` row (the paper desk writes five
per order); an order's insert took 7.5 us and a status change 6 us in all. The conditions mean the
same, written as equalities:

* the CHECK constraints of ``orders`` on ``status``, ``type``, ``time_in_force`` and ``side``:
  ``status IN ('new', ...)`` becomes ``(status = 'new' OR ...)`` (:func:`storage.schema.any_of`);

* ``ix_orders_account_open``: ``status IN ('new', 'submitted', 'accepted', 'partially_filled')``
  becomes ``(status = 'new' OR status = 'submitted' OR status = 'accepted' OR
  status = 'partially_filled')``;
* ``ix_audit_log_action``: ``action NOT IN ('order.created', 'order.transition', 'order.fill')``
  becomes ``(action <> 'order.created' AND action <> 'order.transition' AND
  action <> 'order.fill')``.

Queries name the new forms (``storage.schema.OPEN_ORDERS_WHERE``, ``AUDIT_INDEXED_WHERE``) so that
SQLite still uses the indexes. PostgreSQL gets the same schema (its planner proves either form).

SQLite changes a CHECK constraint by rebuilding the table (copy, drop, rename), and the drop of
``orders`` is refused while ``fills.order_id`` or ``orders.parent_id`` reference its rows
(``foreign_keys`` is on and cannot be turned off inside the migration's transaction): the fills
are set aside in a temporary table and the bracket links cleared, then both restored as they were
(fill ids included). No row changes; the downgrade restores 0018's conditions the same way.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the conditions of both revisions, as storage.schema has them (a migration never imports the models)
_VALUES = {
    "status": (
        "new",
        "submitted",
        "accepted",
        "partially_filled",
        "filled",
        "rejected",
        "cancelled",
        "expired",
    ),
    "type": ("market", "limit", "stop", "stop_limit"),
    "time_in_force": ("gtc", "day", "ioc"),
    "side": ("buy", "sell"),
}
_OPEN = _VALUES["status"][:4]
_AUDITED = ("order.created", "order.transition", "order.fill")
_CHILDREN = "parent_id IS NOT NULL"


def _listed(column: str, values: tuple[str, ...], *, negated: bool = False) -> str:
    """0018's form: ``column [NOT] IN ('a', 'b')``."""
    return f"{column} {'NOT IN' if negated else 'IN'} ({', '.join(repr(v) for v in values)})"


def _compared(column: str, values: tuple[str, ...], *, negated: bool = False) -> str:
    """0019's form: ``(column = 'a' OR column = 'b')``, negated ``(column <> 'a' AND column <> 'b')``."""
    joined = (
        " AND ".join(f"{column} <> {v!r}" for v in values)
        if negated
        else " OR ".join(f"{column} = {v!r}" for v in values)
    )
    return f"({joined})"


@contextmanager
def _orders_rebuildable() -> Iterator[None]:
    """On SQLite, the references to ``orders`` set aside for the block (see the module documentation)."""
    if op.get_bind().dialect.name != "sqlite":
        yield
        return
    op.execute("CREATE TEMP TABLE _keep_fills AS SELECT * FROM fills")
    op.execute("DELETE FROM fills")
    op.execute(
        "CREATE TEMP TABLE _keep_parents AS SELECT id, parent_id FROM orders WHERE parent_id IS NOT NULL"
    )
    op.execute("UPDATE orders SET parent_id = NULL WHERE parent_id IS NOT NULL")
    yield
    op.execute(
        "UPDATE orders SET parent_id = (SELECT k.parent_id FROM _keep_parents k WHERE k.id = orders.id) "
        "WHERE id IN (SELECT id FROM _keep_parents)"
    )
    op.execute("INSERT INTO fills SELECT * FROM _keep_fills")
    op.execute("DROP TABLE _keep_parents")
    op.execute("DROP TABLE _keep_fills")


_INDEXES = (  # name, table, column: dropped before the rebuild of orders, made again after it
    ("ix_orders_account_open", "orders", "account"),
    ("ix_orders_parent_id", "orders", "parent_id"),  # its predicate is the same in both
    ("ix_audit_log_action", "audit_log", "action"),
)


def _conditions(form: Callable[..., str]) -> None:
    """Every condition 0019 changes, in ``form``: the CHECKs of ``orders``, the partial indexes."""
    predicates = {
        "ix_orders_account_open": form("status", _OPEN),
        "ix_orders_parent_id": _CHILDREN,
        "ix_audit_log_action": form("action", _AUDITED, negated=True),
    }
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)
    checks = {op.f(f"ck_orders_{column}"): form(column, values) for column, values in _VALUES.items()}
    if op.get_bind().dialect.name == "sqlite":
        with _orders_rebuildable(), op.batch_alter_table("orders", recreate="always") as batch:
            for name, condition in checks.items():
                batch.drop_constraint(name, type_="check")
                batch.create_check_constraint(name, condition)
    else:
        for name, condition in checks.items():
            op.drop_constraint(name, "orders", type_="check")
            op.create_check_constraint(name, "orders", condition)
    for name, table, column in _INDEXES:
        where = sa.text(predicates[name])
        op.create_index(name, table, [column], sqlite_where=where, postgresql_where=where)


def upgrade() -> None:
    """The CHECKs of ``orders`` and the predicates of its open-orders index and of the audit log's
    index as equalities and inequalities."""
    _conditions(_compared)


def downgrade() -> None:
    """0018's ``IN`` and ``NOT IN`` conditions again."""
    _conditions(_listed)
