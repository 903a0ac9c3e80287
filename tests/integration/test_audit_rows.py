"""``storage.audit.write_audit_rows`` on SQLite and (with TEST_POSTGRES_URL) PostgreSQL, where
several rows go by one ``COPY``: the rows are stored in their order, with their text as
:func:`storage.audit.audit_row` serialised it (tabs, newlines, backslashes and non-ASCII text
included), read back as they were written, and rolled back with the caller's transaction."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from storage.audit import audit_row, list_audit, write_audit_rows

CASES = [
    {"account": "paper", "from": "submitted", "to": "accepted"},
    {"s": 'tab\there, new\nline, back\\slash, "quoted", é ✓', "n": None, "f": 0.1 + 0.2, "i": -3},
    {"nan": float("nan"), "nested": {"token": "x", "k": [1, 2.5]}, "url": "postgresql://u:pw@h/db"},
]


def test_rows_are_stored_in_order_as_serialised_and_read_back(engine: Engine) -> None:
    rows = [audit_row(actor="t", action=f"t.{k}", subject=f"s:{k}", details=d) for k, d in enumerate(CASES)]
    with engine.begin() as conn:
        write_audit_rows(conn, rows)
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT action, details FROM audit_log ORDER BY id")).all()
        entries = list_audit(conn)
    assert [action for action, _ in stored] == ["t.0", "t.1", "t.2"]
    if engine.dialect.name == "sqlite":  # the text as serialised (PostgreSQL's driver parses json)
        assert [details for _, details in stored] == [r["details"] for r in rows]
    assert [e.action for e in entries] == ["t.0", "t.1", "t.2"]
    assert entries[1].details["s"] == CASES[1]["s"] and entries[1].details["n"] is None
    assert entries[2].details["nan"] == "nan" and entries[2].details["nested"]["token"] == "***"
    assert "pw" not in entries[2].details["url"]


def test_rows_roll_back_with_the_callers_transaction(engine: Engine) -> None:
    rows = [audit_row(actor="t", action="t.x", subject="s", details=d) for d in CASES]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        write_audit_rows(conn, rows)
        raise RuntimeError("after the rows")
    with engine.connect() as conn:
        assert list_audit(conn) == []
