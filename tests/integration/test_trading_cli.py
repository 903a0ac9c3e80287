"""``fks halt`` / ``fks resume`` / ``fks orders`` / ``fks positions`` on a paper account in a real
SQLite store: the kill switch cancels open orders and blocks new ones until resumed."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from execution.oms import OrderManager, TradingHalted
from execution.orders import Fill, OrderRequest, OrderStatus, OrderType, Side
from storage import open_store


def test_kill_switch_and_the_book_from_the_cli(tmp_path: Path) -> None:
    from flows.cli import app

    db_url = f"sqlite:///{tmp_path / 'fks.db'}"
    engine = open_store(db_url)
    oms = OrderManager(engine, "desk", initial_cash=10_000.0)
    bought = oms.submit(OrderRequest("b1", "desk", "SPX", Side.BUY, 2.0))
    oms.accept(bought.id)
    oms.apply_fill(
        Fill(bought.id, "SPX", Side.BUY, 2.0, 100.0, 0.5, pd.Timestamp("2024-01-02", tz="UTC")), "f1"
    )
    resting = oms.submit(OrderRequest("l1", "desk", "SPX", Side.BUY, 1.0, OrderType.LIMIT, limit_price=90.0))
    oms.accept(resting.id)
    env = {"FKS_DB_URL": db_url, "FKS_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    runner = CliRunner()

    halted = runner.invoke(app, ["halt", "--account", "desk", "--reason", "drawdown"], env=env)
    assert halted.exit_code == 0, halted.output
    assert "1 open order(s) cancelled" in halted.output
    oms.recover()
    assert oms.order(resting.id).status is OrderStatus.CANCELLED and not oms.open_orders()
    with pytest.raises(TradingHalted, match="fks resume"):
        oms.submit(OrderRequest("b2", "desk", "SPX", Side.BUY, 1.0))

    positions = json.loads(runner.invoke(app, ["positions", "--account", "desk", "--json"], env=env).output)
    assert positions["halted"] and positions["halt_reason"] == "drawdown"
    assert positions["cash"] == pytest.approx(10_000.0 - 200.0 - 0.5)
    assert [(p["symbol"], p["quantity"]) for p in positions["positions"]] == [("SPX", 2.0)]
    orders = json.loads(runner.invoke(app, ["orders", "--account", "desk", "--json"], env=env).output)
    assert [(o["client_order_id"], o["status"]) for o in orders] == [("l1", "cancelled"), ("b1", "filled")]
    assert "cancelled" in runner.invoke(app, ["orders", "--account", "desk"], env=env).output

    resumed = runner.invoke(app, ["resume", "--account", "desk"], env=env)
    assert resumed.exit_code == 0, resumed.output
    assert oms.submit(OrderRequest("b2", "desk", "SPX", Side.BUY, 1.0)).status is OrderStatus.SUBMITTED
    unknown = runner.invoke(app, ["positions", "--account", "nope"], env=env)
    assert unknown.exit_code == 2 and "no paper account 'nope'" in unknown.output
    engine.dispose()


def test_pnl_values_the_book_at_the_stored_closes(tmp_path: Path) -> None:
    """``fks pnl``: a long, a short and a EUR-quoted asset (currency from the asset registry)
    valued at the last stored closes, in USD and with ``--base EUR``; drawdown from the marks."""
    from flows.cli import app
    from storage.bars import upsert_bars

    db_url = f"sqlite:///{tmp_path / 'fks.db'}"
    engine = open_store(db_url)
    assets = tmp_path / "assets.yaml"
    assets.write_text(
        "assets:\n  - {symbol: SPX, asset_class: index}\n  - {symbol: GOOGL}\n"
        "  - {symbol: SAP, currency: EUR, enabled: false}\n"
    )
    oms = OrderManager(engine, "desk", initial_cash=10_000.0, currencies={"SAP": "EUR"})
    day = pd.Timestamp("2024-01-02", tz="UTC")
    with engine.begin() as conn:  # EUR at 1.10 USD when SAP is bought (this bar closed at 23:00)
        bar = pd.DataFrame({c: [1.10] for c in ("open", "high", "low", "close")} | {"volume": [1.0]},
                           index=pd.DatetimeIndex([day - pd.Timedelta(hours=2)], name="ts"))  # fmt: skip
        upsert_bars(conn, "EURUSD", "1h", bar, source="test")
    for cid, symbol, side, quantity, price, fee in [
        ("b1", "SPX", Side.BUY, 2.0, 100.0, 0.5),
        ("s1", "GOOGL", Side.SELL, 3.0, 50.0, 0.25),
        ("b2", "SAP", Side.BUY, 10.0, 50.0, 0.0),
    ]:
        order = oms.submit(OrderRequest(cid, "desk", symbol, side, quantity))
        oms.accept(order.id)
        oms.apply_fill(Fill(order.id, symbol, side, quantity, price, fee, day), f"f-{cid}")
    oms.mark_to_market({"SPX": 100.0, "GOOGL": 50.0, "SAP": 50.0}, day)
    oms.mark_to_market({"SPX": 90.0, "GOOGL": 55.0, "SAP": 40.0}, day + pd.Timedelta(days=1))
    with engine.begin() as conn:
        for symbol, timeframe, close in [("SPX", "1d", 110.0), ("GOOGL", "1d", 40.0), ("SAP", "1d", 60.0),
                                         ("EURUSD", "1h", 1.25)]:  # fmt: skip
            bar = pd.DataFrame({c: [close] for c in ("open", "high", "low", "close")} | {"volume": [1.0]},
                               index=pd.DatetimeIndex([day], name="ts"))  # fmt: skip
            upsert_bars(conn, symbol, timeframe, bar, source="test")
    env = {
        "FKS_DB_URL": db_url,
        "FKS_DATA_DIR": str(tmp_path),
        "FKS_ASSETS_FILE": str(assets),
        "COLUMNS": "200",
    }
    runner = CliRunner()

    result = runner.invoke(app, ["pnl", "--account", "desk", "--json"], env=env)
    assert result.exit_code == 0, result.output
    book = json.loads(result.output)
    cash = 10_000.0 - 200.5 + 149.75 - 550.0  # SAP: 10 * 50 EUR at 1.10
    assert (
        book["base"] == "USD" and book["cash"] == pytest.approx(cash) and book["fees"] == pytest.approx(0.75)
    )
    rows = {p["symbol"]: p for p in book["positions"]}
    assert rows["SPX"]["price"] == 110.0 and rows["SPX"]["unrealised_pnl_base"] == pytest.approx(20.0)
    assert rows["GOOGL"]["market_value_base"] == pytest.approx(-120.0)
    assert rows["GOOGL"]["unrealised_pnl_base"] == pytest.approx(30.0)  # short 3 from 50 to 40
    assert (rows["SAP"]["currency"], rows["SAP"]["fx"]) == ("EUR", 1.25)
    assert rows["SAP"]["market_value_base"] == pytest.approx(750.0)  # 10 * 60 EUR * 1.25
    assert book["equity"] == pytest.approx(cash + 220.0 - 120.0 + 750.0)
    assert rows["SAP"]["unrealised_pnl_base"] == pytest.approx(750.0 - 550.0)  # price and FX move
    assert book["unrealised_pnl"] == pytest.approx(20.0 + 30.0 + 200.0)
    # cash + the marked positions, per mark (SAP at 1.10: the 1.25 bar was stored after both marks)
    marks = [10_000.0 - 0.75, cash + 180.0 - 165.0 + 10 * 40.0 * 1.10]
    assert book["drawdown"]["points"] == 2
    assert book["drawdown"]["current"] == pytest.approx(marks[1] / marks[0] - 1)
    assert not book["halted"]

    eur = json.loads(
        runner.invoke(app, ["pnl", "--account", "desk", "--json", "--base", "eur"], env=env).output
    )
    assert eur["base"] == "EUR" and eur["equity"] == pytest.approx(book["equity"] / 1.25)
    assert {p["symbol"]: p["fx"] for p in eur["positions"]} == {"GOOGL": 0.8, "SAP": 1.0, "SPX": 0.8}

    text = runner.invoke(app, ["pnl", "--account", "desk"], env=env)
    assert text.exit_code == 0, text.output
    assert "P&L of desk" in text.output and f"{book['equity']:,.2f}" in text.output
    assert "max drawdown" in text.output and "750.00" in text.output

    held = json.loads(runner.invoke(app, ["positions", "--account", "desk", "--json"], env=env).output)
    sap = {p["symbol"]: p for p in held["positions"]}["SAP"]
    assert (sap["avg_cost"], sap["avg_cost_base"]) == (50.0, pytest.approx(55.0))  # EUR, and USD at 1.10
    listed = runner.invoke(app, ["positions", "--account", "desk"], env=env)
    assert listed.exit_code == 0 and "avg cost USD" in listed.output and "55.0000" in listed.output

    unknown = runner.invoke(app, ["pnl", "--account", "nope"], env=env)
    assert unknown.exit_code == 2 and "no paper account 'nope'" in unknown.output
    assert "fks trade --paper --account nope" in unknown.output
    no_rate = runner.invoke(app, ["pnl", "--account", "desk", "--base", "GBP"], env=env)
    assert no_rate.exit_code == 2 and "fks ingest --symbols" in no_rate.output
    bad = runner.invoke(app, ["pnl", "--account", "desk", "--base", "EURO"], env=env)
    assert bad.exit_code == 2 and "three-letter" in bad.output
    engine.dispose()


def test_trade_refuses_bad_usage_before_it_asks_the_service() -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    runner = CliRunner()
    for args, needle in (
        (["trade"], "pass --paper"),
        (["trade", "--paper", "--every", "5x"], "positive interval"),
        (["trade", "--paper", "--once", "--every", "1h"], "choose one"),
        (["trade", "--paper", "--replay", "2018-01-01", "2017-01-01"], "oldest first"),
        (["trade", "--paper", "--replay", "nonsense", "2017-01-01"], "not a timestamp"),
    ):
        done = runner.invoke(app, args)
        assert done.exit_code == 2 and needle in done.output, (args, done.output)
