"""Migration 0020: ``fills`` without ``ix_fills_order_id``; every row kept both ways, the fills of
an order still listed, and the foreign key to ``orders`` still enforced."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from storage.db import make_engine, migrate
from storage.execution import list_fills
from tests.migration_support import book, db_revision, index_predicates, migrate_to, seeded_at


def test_0020_drops_the_fills_order_index_and_keeps_every_row_both_ways(url: str) -> None:
    eng = make_engine(url)
    try:
        before = seeded_at(eng, "0019")
        assert index_predicates(eng, "fills") == {"ix_fills_order_id": None}

        migrate_to(eng, "0020")
        assert db_revision(eng) == "0020"
        assert book(eng) == before
        assert index_predicates(eng, "fills") == {}
        with eng.connect() as conn:
            assert [f.id for f in list_fills(conn, "a", order_id="o1")] == [7, 9]
        with pytest.raises(IntegrityError), eng.begin() as conn:  # the foreign key holds
            conn.execute(text(
                "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts,"
                " broker_fill_id, recorded_at) VALUES ('nope', 'a', 'SPY', 'buy', 1, 100, 0, 0, 'b-x', 0)"
            ))  # fmt: skip

        migrate_to(eng, "0019", up=False)
        assert db_revision(eng) == "0019"
        assert book(eng) == before
        assert index_predicates(eng, "fills") == {"ix_fills_order_id": None}
        migrate(eng)
        assert book(eng) == before
        assert index_predicates(eng, "fills") == {}
    finally:
        eng.dispose()
