"""Migration 0019: the partial indexes of ``orders`` and ``audit_log`` with predicates written as
equalities and inequalities; every row kept both ways, the queries still use the indexes, and
SQLite no longer builds a temporary table for each ``audit_log`` row it writes."""

from __future__ import annotations

from sqlalchemy import Engine

from storage.db import make_engine, migrate
from tests.migration_support import book, db_revision, index_predicates, migrate_to, query_plans, seeded_at


def _predicates(eng: Engine) -> tuple[str, str]:
    open_book = index_predicates(eng, "orders")["ix_orders_account_open"]
    audited = index_predicates(eng, "audit_log")["ix_audit_log_action"]
    assert open_book is not None and audited is not None
    return open_book, audited


def _audit_insert_builds_a_list(eng: Engine) -> bool:
    """Whether SQLite's program for inserting an ``audit_log`` row fills a temporary table (what an
    ``IN`` list in the partial index's predicate costs every row)."""
    with eng.connect() as conn:
        program = conn.exec_driver_sql(
            "EXPLAIN INSERT INTO audit_log (at, actor, action, subject, details) "
            "VALUES (0, 'a', 'b', 'c', '{}')"
        ).all()
    return any(row[1] == "OpenEphemeral" for row in program)


def test_0019_keeps_every_row_both_ways_and_the_queries_use_the_indexes(url: str) -> None:
    eng = make_engine(url)
    try:
        before = seeded_at(eng, "0018")
        old = _predicates(eng)
        sqlite = eng.dialect.name == "sqlite"
        if sqlite:
            assert " IN (" in old[0] and " NOT IN (" in old[1]
            assert _audit_insert_builds_a_list(eng)

        migrate(eng)
        assert db_revision(eng) == "0019"
        assert book(eng) == before
        open_book, audited = _predicates(eng)
        for word in ("'new'", "'submitted'", "'accepted'", "'partially_filled'"):
            assert word in open_book, open_book
        for word in ("'order.created'", "'order.transition'", "'order.fill'"):
            assert word in audited, audited
        assert " OR " in open_book and "<>" in audited and " AND " in audited
        assert not any(form in p for p in (open_book, audited) for form in (" IN (", "ANY ("))
        if sqlite:
            assert not _audit_insert_builds_a_list(eng)
            open_orders, children, halts = query_plans(eng)
            assert "ix_orders_account_open" in open_orders
            assert "ix_orders_parent_id" in children
            assert "ix_audit_log_action" in halts

        migrate_to(eng, "0018", up=False)
        assert db_revision(eng) == "0018"
        assert book(eng) == before
        assert _predicates(eng) == old
        migrate(eng)
        assert book(eng) == before
    finally:
        eng.dispose()
