"""Migration 0018: partial indexes on ``orders`` and ``audit_log``, ``equity_history`` without rowid
on SQLite; every row kept both ways, the open book and the audit log's rare actions still read by
their indexes, and a downgrade refused by an older step leaves 0018's schema as it was."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, event, inspect, text

from storage.audit import list_audit
from storage.db import make_engine, migrate
from storage.execution import list_equity, list_orders
from storage.schema import OPEN_ORDER_STATUSES
from tests.migration_support import db_revision, migrate_to


def _where(eng: Engine, table: str) -> dict[str, str | None]:
    """Each plain (not unique) index of ``table`` -> its predicate (None: a full index)."""
    found: dict[str, str | None] = {}
    for index in inspect(eng).get_indexes(table):
        if index["unique"]:  # PostgreSQL lists a unique constraint's index too
            continue
        options = index.get("dialect_options", {})
        where = options.get(f"{eng.dialect.name}_where")
        found[str(index["name"])] = None if where is None else str(where)
    return found


def _seed(eng: Engine) -> None:
    rows = [
        "INSERT INTO accounts (name, base_currency, initial_cash, cash, created_at) "
        "VALUES ('a', 'USD', 1000, 1000, 0)",
        *(
            "INSERT INTO orders (id, client_order_id, account, symbol, side, type, time_in_force, quantity,"
            " filled_quantity, status, parent_id, created_at, updated_at) VALUES "
            f"('{oid}', 'c-{oid}', 'a', 'SPY', 'buy', 'market', 'gtc', 1, {filled}, '{status}', {parent},"
            f" {k}, {k})"
            for k, (oid, status, filled, parent) in enumerate(
                [("o1", "filled", 1, "NULL"), ("o2", "accepted", 0, "NULL"), ("o3", "submitted", 0, "'o1'")]
            )
        ),
        *(
            "INSERT INTO audit_log (at, actor, action, subject, details) VALUES "
            f"({k}, 'oms', '{action}', 's', '{{}}')"
            for k, action in enumerate(["account.open", "order.created", "order.fill", "trading.halt"])
        ),
        *(
            "INSERT INTO equity_history (account, ts, cash, market_value, equity) "
            f"VALUES ('a', {ts}, 1, 2, 3)"
            for ts in (86_400_000, 0)
        ),
    ]
    with eng.begin() as conn:
        for sql in rows:
            conn.execute(text(sql))


def _book(eng: Engine) -> tuple[Any, ...]:
    with eng.connect() as conn:
        return (
            [(o.id, o.status, o.parent_id) for o in list_orders(conn, "a")],
            [o.id for o in list_orders(conn, "a", statuses=OPEN_ORDER_STATUSES)],
            [o.id for o in list_orders(conn, "a", statuses=["filled"])],
            [(e.action, e.at) for e in list_audit(conn)],
            [(e.action, e.id) for e in list_audit(conn, action="trading.halt")],
            [(e.action, e.id) for e in list_audit(conn, action="order.fill")],
            list_equity(conn, "a").reset_index().to_dict("records"),
        )


def _plans(eng: Engine) -> list[str]:
    """SQLite's query plans of reading the open book, the orders of a parent and a rare audit action."""
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, params))

    with eng.connect() as conn:
        event.listen(eng, "before_cursor_execute", capture)
        try:
            list_orders(conn, "a", statuses=list(reversed(OPEN_ORDER_STATUSES)))
            list_orders(conn, "a", parent_id="o1")
            list_audit(conn, action="trading.halt")
        finally:
            event.remove(eng, "before_cursor_execute", capture)
        return [
            " ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all())
            for sql, params in statements
        ]


def test_0018_keeps_every_row_both_ways_and_indexes_what_is_read(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0017")
        _seed(eng)
        before = _book(eng)
        assert (
            before[1] == ["o2", "o3"]
            and before[4] == [("trading.halt", 4)]
            and before[5] == [("order.fill", 3)]
        )
        assert _where(eng, "orders") == {"ix_orders_account_status": None, "ix_orders_parent_id": None}

        migrate(eng)
        assert db_revision(eng) == "0018"
        assert _book(eng) == before
        orders, audit = _where(eng, "orders"), _where(eng, "audit_log")
        assert set(orders) == {"ix_orders_account_open", "ix_orders_parent_id"}
        assert _where(eng, "fills") == {"ix_fills_order_id": None}
        for predicate, words in (
            (orders["ix_orders_account_open"], OPEN_ORDER_STATUSES),
            (orders["ix_orders_parent_id"], ("parent_id", "NOT NULL")),
            (audit["ix_audit_log_action"], ("order.created", "order.transition", "order.fill")),
        ):
            assert predicate is not None and all(w in predicate for w in words), predicate
        if eng.dialect.name == "sqlite":
            assert inspect(eng).get_table_options("equity_history") == {"sqlite_with_rowid": False}
            open_book, children, halts = _plans(eng)
            assert "ix_orders_account_open" in open_book
            assert "ix_orders_parent_id" in children
            assert "ix_audit_log_action" in halts

        migrate_to(eng, "0017", up=False)
        assert db_revision(eng) == "0017"
        assert _book(eng) == before
        assert _where(eng, "orders") == {"ix_orders_account_status": None, "ix_orders_parent_id": None}
        assert _where(eng, "audit_log") == {"ix_audit_log_action": None}
        assert _where(eng, "fills") == {"ix_fills_order_id": None, "ix_fills_account_symbol": None}
        if eng.dialect.name == "sqlite":
            assert inspect(eng).get_table_options("equity_history") == {}
        migrate(eng)
        assert _book(eng) == before
    finally:
        eng.dispose()


def test_a_refused_downgrade_leaves_0018_as_it_was(url: str) -> None:
    """0017 refuses to go back while two accounts share a fill id; 0018's own downgrade ran
    before it in the same command and rolls back with it (SQLite: the table rebuild too)."""
    eng = make_engine(url)
    try:
        migrate(eng)
        with eng.begin() as conn:
            for account in ("a", "b"):
                conn.execute(text(
                    "INSERT INTO accounts (name, base_currency, initial_cash, cash, created_at) "
                    f"VALUES ('{account}', 'USD', 1000, 1000, 0)"
                ))  # fmt: skip
                conn.execute(text(
                    "INSERT INTO orders (id, client_order_id, account, symbol, side, type, time_in_force,"
                    " quantity, filled_quantity, status, created_at, updated_at) VALUES "
                    f"('o-{account}', 'c1', '{account}', 'SPY', 'buy', 'market', 'gtc', 1, 1, 'filled', 0, 0)"
                ))  # fmt: skip
                conn.execute(text(
                    "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts,"
                    f" broker_fill_id, recorded_at) VALUES ('o-{account}', '{account}', 'SPY', 'buy', 1, 100,"
                    " 0, 0, 'c1-1', 0)"
                ))  # fmt: skip
        indexes = (_where(eng, "orders"), _where(eng, "audit_log"))
        options = inspect(eng).get_table_options("equity_history")
        with pytest.raises(RuntimeError, match="belong to more than one account"):
            migrate_to(eng, "0016", up=False)
        assert db_revision(eng) == "0018"
        assert (_where(eng, "orders"), _where(eng, "audit_log")) == indexes
        assert inspect(eng).get_table_options("equity_history") == options
        assert not [t for t in inspect(eng).get_table_names() if t.startswith("_alembic_tmp")]
    finally:
        eng.dispose()
