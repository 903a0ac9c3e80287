"""Migration 0019: the CHECK constraints of ``orders`` and the predicates of the partial indexes of
``orders`` and ``audit_log`` written as equalities and inequalities; every row kept both ways (the
fills and bracket links set aside while SQLite rebuilds ``orders``), the constraints still refuse
what they refused, the queries still use the indexes, and SQLite no longer builds a temporary
table for each order or audit row it writes."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import make_engine, migrate
from tests.migration_support import book, db_revision, index_predicates, migrate_to, query_plans, seeded_at


def _order(**values: str) -> str:
    """The SQL inserting an order of SPY (a plain buy at market in account ``a`` unless ``values``
    say otherwise)."""
    row = {"id": "x", "account": "a", "side": "buy", "type": "market", "tif": "gtc", "status": "submitted"}
    row.update(values)
    return (
        "INSERT INTO orders (id, client_order_id, account, symbol, side, type, time_in_force, quantity,"
        " filled_quantity, status, created_at, updated_at) VALUES ('{id}', '{id}', '{account}', 'SPY',"
        " '{side}', '{type}', '{tif}', 1, 0, '{status}', 0, 0)"
    ).format(**row)


_WRITES = {  # what the desk writes most: an order, a transition, an audit row
    "order": _order(),
    "transition": "UPDATE orders SET status = 'accepted' WHERE id = 'o2' AND status = 'submitted'",
    "audit": "INSERT INTO audit_log (at, actor, action, subject, details) VALUES (0, 'a', 'b', 'c', '{}')",
}


def _conditions(eng: Engine) -> tuple[str, ...]:
    """The CHECKs of ``orders`` on its enum columns and the two partial indexes' predicates."""
    checks = {c["name"]: str(c["sqltext"]) for c in inspect(eng).get_check_constraints("orders")}
    open_book = index_predicates(eng, "orders")["ix_orders_account_open"]
    audited = index_predicates(eng, "audit_log")["ix_audit_log_action"]
    assert open_book is not None and audited is not None
    enums = tuple(checks[f"ck_orders_{c}"] for c in ("status", "type", "time_in_force", "side"))
    return (*enums, open_book, audited)


def _builds_lists(eng: Engine) -> dict[str, bool]:
    """Per write of :data:`_WRITES`: whether SQLite's program for it fills a temporary table (what
    an ``IN`` list in a CHECK or a partial index's predicate costs every row)."""
    with eng.connect() as conn:
        return {
            name: any(row[1] == "OpenEphemeral" for row in conn.exec_driver_sql(f"EXPLAIN {sql}").all())
            for name, sql in _WRITES.items()
        }


def _refused(eng: Engine, **bad: str) -> None:
    with pytest.raises(IntegrityError, match=r"(?i)check"), eng.begin() as conn:
        conn.execute(text(_order(id="bad", **bad)))


def test_0019_keeps_every_row_both_ways_and_the_queries_use_the_indexes(url: str) -> None:
    eng = make_engine(url)
    try:
        before = seeded_at(eng, "0018")
        old = _conditions(eng)
        sqlite = eng.dialect.name == "sqlite"
        if sqlite:
            assert all(" IN (" in c for c in old)
            assert _builds_lists(eng) == {"order": True, "transition": True, "audit": True}

        migrate_to(eng, "0019")
        assert db_revision(eng) == "0019"
        assert book(eng) == before
        status, kind, tif, side, open_book, audited = _conditions(eng)
        for condition, words in (
            (status, ("'new'", "'partially_filled'", "'filled'", "'rejected'", "'cancelled'", "'expired'")),
            (kind, ("'market'", "'limit'", "'stop'", "'stop_limit'")),
            (tif, ("'gtc'", "'day'", "'ioc'")),
            (side, ("'buy'", "'sell'")),
            (open_book, ("'new'", "'submitted'", "'accepted'", "'partially_filled'")),
        ):
            assert " OR " in condition and all(w in condition for w in words), condition
        assert "'filled'" not in open_book
        assert "<>" in audited and " AND " in audited and "'order.transition'" in audited
        conditions = (status, kind, tif, side, open_book, audited)
        assert not any(form in c for c in conditions for form in (" IN (", "ANY ("))
        for bad in ({"status": "bogus"}, {"side": "hold"}, {"type": "iceberg"}, {"tif": "gtd"}):
            _refused(eng, **bad)
        if sqlite:
            assert _builds_lists(eng) == {"order": False, "transition": False, "audit": False}
            open_orders, children, halts = query_plans(eng)
            assert "ix_orders_account_open" in open_orders
            assert "ix_orders_parent_id" in children
            assert "ix_audit_log_action" in halts

        migrate_to(eng, "0018", up=False)
        assert db_revision(eng) == "0018"
        assert book(eng) == before
        assert _conditions(eng) == old
        migrate(eng)
        assert book(eng) == before
    finally:
        eng.dispose()


def test_a_refused_downgrade_leaves_0019_as_it_was(url: str) -> None:
    """0017 refuses to go back while two accounts share a fill id; the downgrades of 0019 (SQLite:
    a rebuild of ``orders`` with the fills set aside) and 0018 ran before it and roll back with it."""
    eng = make_engine(url)
    try:
        before = seeded_at(eng, "0019")
        conditions = _conditions(eng)
        with eng.begin() as conn:
            conn.execute(text(
                "INSERT INTO accounts (name, base_currency, initial_cash, cash, created_at) "
                "VALUES ('b', 'USD', 1000, 1000, 0)"
            ))  # fmt: skip
            conn.execute(text(_order(id="ob", account="b")))
            conn.execute(text(
                "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts,"
                " broker_fill_id, recorded_at) VALUES ('ob', 'b', 'SPY', 'buy', 1, 100, 0, 0, 'b-7', 0)"
            ))  # fmt: skip
        with pytest.raises(RuntimeError, match="belong to more than one account"):
            migrate_to(eng, "0016", up=False)
        assert db_revision(eng) == "0019"
        assert book(eng) == before
        assert _conditions(eng) == conditions
        tables = inspect(eng).get_table_names()
        assert not [t for t in tables if t.startswith("_alembic_tmp") or t.startswith("_keep")]
    finally:
        eng.dispose()
