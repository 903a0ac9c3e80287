"""Moving a test database to a given migration, reading which one it is at, and seeding and reading
the paper desk's tables around a migration."""

from __future__ import annotations

from typing import Any

from alembic import command
from sqlalchemy import Engine, event, inspect, text

from storage.audit import list_audit
from storage.db import VERSION_TABLE, _alembic_config
from storage.execution import list_equity, list_fills, list_orders
from storage.schema import OPEN_ORDER_STATUSES


def migrate_to(engine: Engine, revision: str, *, up: bool = True) -> None:
    """Upgrade (or, with ``up=False``, downgrade) the database behind ``engine`` to ``revision``,
    in one transaction."""
    config = _alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.upgrade if up else command.downgrade)(config, revision)


def db_revision(engine: Engine) -> str:
    """The migration the database behind ``engine`` is at."""
    with engine.connect() as conn:
        return str(conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar_one())


# -- the paper desk's tables (migrations 0018, 0019) ----------------------------------------------


def index_predicates(eng: Engine, table: str) -> dict[str, str | None]:
    """Each plain (not unique) index of ``table`` -> its predicate (None: a full index)."""
    found: dict[str, str | None] = {}
    for index in inspect(eng).get_indexes(table):
        if index["unique"]:  # PostgreSQL lists a unique constraint's index too
            continue
        options = index.get("dialect_options", {})
        where = options.get(f"{eng.dialect.name}_where")
        found[str(index["name"])] = None if where is None else str(where)
    return found


def seed_desk(eng: Engine) -> None:
    """An account ``a`` with three orders (one filled with two fills, one accepted, one a bracket
    child of the first), four audit rows (two of the OMS's per-order actions) and two equity marks,
    written as rows (the schema of migrations 0017 to head)."""
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
        *(  # ids with a gap: a table rebuilt must keep them
            "INSERT INTO fills (id, order_id, account, symbol, side, quantity, price, fee, ts,"
            f" broker_fill_id, recorded_at) VALUES ({fid}, 'o1', 'a', 'SPY', 'buy', 0.5, 100, 0, {fid},"
            f" 'b-{fid}', {fid})"
            for fid in (7, 9)
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


def book(eng: Engine) -> tuple[Any, ...]:
    """What the store's readers see of :func:`seed_desk`'s account: orders (all, open, filled),
    audit rows (all, a rare action, a per-order action), equity marks and fills."""
    with eng.connect() as conn:
        return (
            [(o.id, o.status, o.parent_id) for o in list_orders(conn, "a")],
            [o.id for o in list_orders(conn, "a", statuses=OPEN_ORDER_STATUSES)],
            [o.id for o in list_orders(conn, "a", statuses=["filled"])],
            [(e.action, e.at) for e in list_audit(conn)],
            [(e.action, e.id) for e in list_audit(conn, action="trading.halt")],
            [(e.action, e.id) for e in list_audit(conn, action="order.fill")],
            list_equity(conn, "a").reset_index().to_dict("records"),
            [(f.id, f.order_id, f.broker_fill_id, f.quantity) for f in list_fills(conn, "a")],
        )


def query_plans(eng: Engine) -> list[str]:
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


def seeded_at(engine: Engine, revision: str) -> tuple[Any, ...]:
    """Move the database to ``revision``, seed the desk's tables (:func:`seed_desk`) and return
    their :func:`book` (checked: the open orders and a rare and a per-order audit action read)."""
    migrate_to(engine, revision)
    seed_desk(engine)
    before = book(engine)
    assert (
        before[1] == ["o2", "o3"] and before[4] == [("trading.halt", 4)] and before[5] == [("order.fill", 3)]
    )
    return before
