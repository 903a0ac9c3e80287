"""Migration 0018: partial indexes on ``orders`` and ``audit_log``, ``equity_history`` without rowid
on SQLite; every row kept both ways (the indexes' use by queries: test_migration_0019), and a
downgrade refused by an older step leaves 0018's schema as it was."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from storage.db import make_engine, migrate
from storage.schema import OPEN_ORDER_STATUSES
from tests.migration_support import book, db_revision, index_predicates, migrate_to, seeded_at


def test_0018_keeps_every_row_both_ways_and_indexes_what_is_read(url: str) -> None:
    eng = make_engine(url)
    try:
        before = seeded_at(eng, "0017")
        assert index_predicates(eng, "orders") == {
            "ix_orders_account_status": None,
            "ix_orders_parent_id": None,
        }

        migrate_to(eng, "0018")
        assert db_revision(eng) == "0018"
        assert book(eng) == before
        orders, audit = index_predicates(eng, "orders"), index_predicates(eng, "audit_log")
        assert set(orders) == {"ix_orders_account_open", "ix_orders_parent_id"}
        assert index_predicates(eng, "fills") == {"ix_fills_order_id": None}
        for predicate, words in (
            (orders["ix_orders_account_open"], OPEN_ORDER_STATUSES),
            (orders["ix_orders_parent_id"], ("parent_id", "NOT NULL")),
            (audit["ix_audit_log_action"], ("order.created", "order.transition", "order.fill")),
        ):
            assert predicate is not None and all(w in predicate for w in words), predicate
        if eng.dialect.name == "sqlite":
            assert inspect(eng).get_table_options("equity_history") == {"sqlite_with_rowid": False}

        migrate_to(eng, "0017", up=False)
        assert db_revision(eng) == "0017"
        assert book(eng) == before
        assert index_predicates(eng, "orders") == {
            "ix_orders_account_status": None,
            "ix_orders_parent_id": None,
        }
        assert index_predicates(eng, "audit_log") == {"ix_audit_log_action": None}
        assert index_predicates(eng, "fills") == {"ix_fills_order_id": None, "ix_fills_account_symbol": None}
        if eng.dialect.name == "sqlite":
            assert inspect(eng).get_table_options("equity_history") == {}
        migrate(eng)
        assert book(eng) == before
    finally:
        eng.dispose()


def test_a_refused_downgrade_leaves_0018_as_it_was(url: str) -> None:
    """0017 refuses to go back while two accounts share a fill id; 0018's own downgrade ran
    before it in the same command and rolls back with it (SQLite: the table rebuild too)."""
    eng = make_engine(url)
    try:
        migrate_to(eng, "0018")
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
        indexes = (index_predicates(eng, "orders"), index_predicates(eng, "audit_log"))
        options = inspect(eng).get_table_options("equity_history")
        with pytest.raises(RuntimeError, match="belong to more than one account"):
            migrate_to(eng, "0016", up=False)
        assert db_revision(eng) == "0018"
        assert (index_predicates(eng, "orders"), index_predicates(eng, "audit_log")) == indexes
        assert inspect(eng).get_table_options("equity_history") == options
        assert not [t for t in inspect(eng).get_table_names() if t.startswith("_alembic_tmp")]
    finally:
        eng.dispose()
