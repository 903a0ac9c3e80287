"""Migration 0006 (corporate actions) on a store that already holds assets and bars, both ways."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import inspect
from sqlalchemy.exc import IntegrityError

from storage import (
    CorporateAction,
    list_corporate_actions,
    make_engine,
    migrate,
    read_bars,
    upsert_bars,
    upsert_corporate_actions,
)
from tests.migration_support import db_revision, migrate_to

SPLIT = CorporateAction("AAPL", pd.Timestamp("2020-08-31", tz="UTC"), "split", 4.0, "polygon")


def _bars() -> pd.DataFrame:
    index = pd.date_range("2020-08-27", periods=3, freq="D", tz="UTC", name="ts").as_unit("ns")
    return pd.DataFrame(
        {"open": [500.0, 499.0, 127.0], "high": [505.0, 502.0, 131.0], "low": [495.0, 497.0, 126.0],
         "close": [500.0, 499.2, 129.0], "volume": [4e7, 4.6e7, 2.2e8]},
        index=index,
    )  # fmt: skip


def test_0006_adds_corporate_actions_keeps_bars_and_round_trips(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0005")
        assert "corporate_actions" not in inspect(eng).get_table_names()
        bars = _bars()
        with eng.begin() as conn:
            upsert_bars(conn, "AAPL", "1d", bars, source="csv")

        migrate_to(eng, "0006")
        assert db_revision(eng) == "0006"
        pk = inspect(eng).get_pk_constraint("corporate_actions")
        assert pk["constrained_columns"] == ["symbol", "kind", "ex_date"]
        columns = {c["name"] for c in inspect(eng).get_columns("corporate_actions")}
        assert columns == {"symbol", "kind", "ex_date", "ratio", "source", "recorded_at"}
        with eng.begin() as conn:
            assert upsert_corporate_actions(conn, [SPLIT]) == 1
            ex_ms = conn.exec_driver_sql("SELECT ex_date FROM corporate_actions").scalar_one()
        assert ex_ms == 1_598_832_000_000  # epoch milliseconds, like bars.ts
        with pytest.raises(IntegrityError), eng.begin() as conn:  # the ratio is constrained in SQL too
            conn.exec_driver_sql(
                "INSERT INTO corporate_actions (symbol, kind, ex_date, ratio, source, recorded_at) "
                "VALUES ('X', 'split', 0, 0.0, 'manual', 0)"
            )

        migrate_to(eng, "0005", up=False)
        assert db_revision(eng) == "0005"
        assert "corporate_actions" not in inspect(eng).get_table_names()
        pd.testing.assert_frame_equal(read_bars(eng, "AAPL", "1d"), bars, check_freq=False)

        migrate(eng)  # and up again: an empty table
        with eng.connect() as conn:
            assert list_corporate_actions(conn) == []
        pd.testing.assert_frame_equal(read_bars(eng, "AAPL", "1d"), bars, check_freq=False)
    finally:
        eng.dispose()


def test_0007_adds_api_keys_and_round_trips(url: str) -> None:
    eng = make_engine(url)
    try:
        migrate_to(eng, "0006")
        assert "api_keys" not in inspect(eng).get_table_names()
        migrate_to(eng, "0007")
        assert db_revision(eng) == "0007"
        columns = {c["name"] for c in inspect(eng).get_columns("api_keys")}
        assert columns == {"id", "name", "key_hash", "prefix", "created_at", "revoked_at"}
        migrate_to(eng, "0006", up=False)
        assert "api_keys" not in inspect(eng).get_table_names()
        migrate(eng)
        assert "api_keys" in inspect(eng).get_table_names()
    finally:
        eng.dispose()


def test_0008_adds_predictions_and_round_trips(url: str) -> None:
    from storage.predictions import Prediction, list_predictions, record_predictions

    eng = make_engine(url)
    try:
        migrate_to(eng, "0007")
        assert "predictions" not in inspect(eng).get_table_names()
        migrate_to(eng, "0008")
        assert db_revision(eng) == "0008"
        with eng.begin() as conn:
            bar = pd.Timestamp("2024-01-02", tz="UTC")
            row = Prediction(request_id="r1", model="m", version="1", alias="champion", symbol="SPX",
                             bar_ts=bar, output={"x": 1.0}, latency_ms=2.0)  # fmt: skip
            record_predictions(conn, [row])
        with eng.connect() as conn:
            assert list(list_predictions(conn)["request_id"]) == ["r1"]
        migrate_to(eng, "0007", up=False)
        assert "predictions" not in inspect(eng).get_table_names()
        assert "api_keys" in inspect(eng).get_table_names()
        migrate(eng)
        with eng.connect() as conn:
            assert list_predictions(conn).empty
    finally:
        eng.dispose()


def test_0009_adds_the_execution_tables_and_round_trips(url: str) -> None:
    from execution.oms import OrderManager
    from execution.orders import Fill, OrderRequest, Side
    from storage.execution import list_fills, list_positions

    tables = {"accounts", "orders", "fills", "positions", "equity_history", "trading_state"}
    eng = make_engine(url)
    try:
        migrate_to(eng, "0008")
        assert not tables & set(inspect(eng).get_table_names())
        with eng.begin() as conn:
            upsert_bars(conn, "SPY", "1d", _bars(), source="csv")
        migrate_to(eng, "0009")
        assert db_revision(eng) == "0009"
        assert tables <= set(inspect(eng).get_table_names())
        uniques = {u["name"]: u["column_names"] for u in inspect(eng).get_unique_constraints("orders")}
        assert uniques["uq_orders_account_client_order_id"] == ["account", "client_order_id"]
        migrate(eng)  # today's OMS writes today's columns of those tables (0016 added FX ones)
        oms = OrderManager(eng, "paper", initial_cash=1_000.0)
        order = oms.accept(oms.submit(OrderRequest("c1", "paper", "SPY", Side.BUY, 2)).id)
        ts = pd.Timestamp("2020-08-28", tz="UTC")
        oms.apply_fill(Fill(order.id, "SPY", Side.BUY, 2, 499.2, 0.1, ts), "b1")
        oms.mark_to_market({"SPY": 129.0 * 4}, ts)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT ts FROM fills").scalar_one() == 1_598_572_800_000  # epoch ms

        migrate_to(eng, "0008", up=False)
        assert db_revision(eng) == "0008"
        assert not tables & set(inspect(eng).get_table_names())
        assert {"predictions", "api_keys", "audit_log"} <= set(inspect(eng).get_table_names())
        pd.testing.assert_frame_equal(read_bars(eng, "SPY", "1d"), _bars(), check_freq=False)

        migrate(eng)  # and up again: empty books
        with eng.connect() as conn:
            assert list_fills(conn, "paper") == [] and list_positions(conn, "paper") == []
        pd.testing.assert_frame_equal(read_bars(eng, "SPY", "1d"), _bars(), check_freq=False)
    finally:
        eng.dispose()
