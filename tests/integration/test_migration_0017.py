"""Migration 0017: ``fills`` unique on ``(account, broker_fill_id)``; every row kept both ways, and
a downgrade that the data forbids (two accounts with a fill of the same id) is refused, changing nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from storage.db import _alembic_config, make_engine, migrate


def _unique(engine: Engine) -> list[list[str]]:
    return sorted(sorted(c["column_names"]) for c in inspect(engine).get_unique_constraints("fills"))


def _fill(account: str, order: str, fill_id: str) -> str:
    return (
        "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts, broker_fill_id,"
        f" recorded_at) VALUES ('{order}', '{account}', 'SPY', 'buy', 1, 100, 0, 0, '{fill_id}', 0)"
    )


def test_fill_ids_are_unique_per_account_after_0017_and_globally_before(url: str) -> None:
    from alembic import command

    eng = make_engine(url)
    try:
        config = _alembic_config()
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0016")
            for account in ("a", "b"):
                conn.execute(
                    text(
                        "INSERT INTO accounts (name, base_currency, initial_cash, cash, created_at) "
                        f"VALUES ('{account}', 'USD', 1000, 1000, 0)"
                    )
                )
                conn.execute(
                    text(
                        "INSERT INTO orders (id, client_order_id, account, symbol, side, type,"
                        " time_in_force, quantity, filled_quantity, avg_fill_price, status, created_at,"
                        f" updated_at) VALUES ('o-{account}', 'c1', '{account}', 'SPY', 'buy', 'market',"
                        " 'gtc', 1, 1, 100, 'filled', 0, 0)"
                    )
                )
            conn.execute(text(_fill("a", "o-a", "c1-1")))
        with pytest.raises(IntegrityError), eng.begin() as conn:  # before: one id across accounts
            conn.execute(text(_fill("b", "o-b", "c1-1")))
        assert _unique(eng) == [["broker_fill_id"]]

        migrate(eng)
        assert _unique(eng) == [["account", "broker_fill_id"]]
        with eng.begin() as conn:
            conn.execute(text(_fill("b", "o-b", "c1-1")))  # another account: its own fill
        with pytest.raises(IntegrityError), eng.begin() as conn:  # the same account: refused
            conn.execute(text(_fill("b", "o-b", "c1-1")))

        with (
            pytest.raises(RuntimeError, match=r"'c1-1' belong to more than one account"),
            eng.begin() as conn,
        ):
            config.attributes["connection"] = conn
            command.downgrade(config, "0016")  # the data forbids going back
        assert _unique(eng) == [["account", "broker_fill_id"]]
        with eng.begin() as conn:
            conn.execute(text("DELETE FROM fills WHERE account = 'b'"))
            config.attributes["connection"] = conn
            command.downgrade(config, "0016")
        assert _unique(eng) == [["broker_fill_id"]]
        with eng.connect() as conn:
            assert conn.execute(text("SELECT account, broker_fill_id FROM fills")).all() == [("a", "c1-1")]
        migrate(eng)
    finally:
        eng.dispose()
