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
