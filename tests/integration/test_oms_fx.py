"""FX booking: fills of an asset quoted in EUR in a USD account are booked in USD at the rate of
the last EURUSD bar completed at the fill's time (stored on the fill), the position keeps its cost
in EUR and in USD, the paper broker's books agree, and an order of a symbol whose FX pair is not
stored is refused before anything is written. On SQLite and (with TEST_POSTGRES_URL) PostgreSQL."""

from __future__ import annotations

import pandas as pd
import pytest
from sqlalchemy import Engine, func, select

from execution.broker import Bar, PaperBroker, PaperCosts
from execution.fx import MissingFxRate
from execution.oms import OrderManager
from execution.orders import Fill, OrderRequest, Side
from execution.portfolio import reconcile, value_account
from storage.bars import upsert_bars
from storage.execution import get_account, list_fills, list_orders, list_positions
from storage.schema import AuditLogRow

D = pd.Timedelta(days=1)
T0 = pd.Timestamp("2024-01-02", tz="UTC")


def _bars(engine: Engine, symbol: str, rows: dict[pd.Timestamp, float]) -> None:
    """Daily bars of ``symbol`` (open = close = the value, for hand arithmetic)."""
    index = pd.DatetimeIndex(list(rows), name="ts")
    values = list(rows.values())
    frame = pd.DataFrame(
        {"open": values, "high": values, "low": values, "close": values, "volume": [1e6] * len(values)},
        index=index,
    )
    with engine.begin() as conn:
        upsert_bars(conn, symbol, "1d", frame, source="test")


def test_a_eur_asset_in_a_usd_account_books_cash_and_realised_pnl_in_usd(engine: Engine) -> None:
    # EURUSD: the 12-31 bar (1.10) closes at 01-01 00:00; the 01-02 bar (1.20) at 01-03 00:00; the
    # 01-03 bar (9.99) is still open at 01-03 00:00: using it would be look-ahead
    _bars(engine, "EURUSD", {T0 - 2 * D: 1.10, T0: 1.20, T0 + D: 9.99})
    oms = OrderManager(engine, "fx", initial_cash=10_000.0, currencies={"SAP": "EUR"})
    broker = PaperBroker(PaperCosts(slippage_bps=0, spread_bps=0, fee_bps=10, volume_share=None),
                         account="fx", cash=10_000.0, fx=oms.fx_rate)  # fmt: skip
    assert (oms.base_currency, oms.currency("SAP"), oms.currency("SPY")) == ("USD", "EUR", "USD")
    broker.on_bar("SAP", Bar(T0 - D, 100.0, 100.0, 100.0, 100.0, 1e6))

    def trade(cid: str, side: Side, decided: pd.Timestamp, price: float) -> None:
        order = oms.submit(OrderRequest(cid, "fx", "SAP", side, 10.0, decided_at=decided))
        assert broker.submit(order.broker_request, decided_at=decided).accepted
        oms.accept(order.id)
        (fill,) = broker.on_bar("SAP", Bar(decided + D, price, price, price, price, 1e6))
        oms.apply_fill(fill, fill.broker_fill_id)

    # buy 10 at 100 EUR (fee 10 bps: 1 EUR) filled on the 01-02 bar, when EUR is 1.10 USD; sell 10 at
    # 100 EUR (1 EUR fee) filled on the 01-03 bar, at 1.20
    trade("buy", Side.BUY, T0 - D, 100.0)
    assert oms.cash() == pytest.approx(10_000.0 - 1_001.0 * 1.10)
    (held,) = oms.positions().values()
    assert (held.avg_cost, held.avg_cost_base) == (100.0, pytest.approx(110.0))
    trade("sell", Side.SELL, T0, 100.0)

    with engine.connect() as conn:
        fills = list_fills(conn, "fx")
        (position,) = list_positions(conn, "fx")
        account = get_account(conn, "fx")
    assert [(f.price, f.fee, f.fx_rate) for f in fills] == [
        (100.0, pytest.approx(1.0), 1.10), (100.0, pytest.approx(1.0), 1.20)
    ]  # fmt: skip
    assert position.quantity == 0.0
    assert position.realised_pnl == pytest.approx(0.0)  # no price move in EUR
    assert position.realised_pnl_base == pytest.approx(10 * 100.0 * (1.20 - 1.10))  # the FX move: 100 USD
    assert account is not None
    # cash = initial - 1,001 EUR at 1.10 + 999 EUR at 1.20 = initial + 100 realised - 2.3 USD of fees
    assert account.cash == pytest.approx(10_000.0 - 1_101.1 + 1_198.8)
    assert account.cash == pytest.approx(10_000.0 + 100.0 - 1.1 - 1.2)
    assert oms.cash() == account.cash
    # the paper broker booked the same cash at the same rates: the books reconcile
    snapshot = broker.account()
    assert snapshot.cash == pytest.approx(account.cash, abs=1e-9)
    assert snapshot.fees == pytest.approx(2.3)
    assert reconcile({s: p.quantity for s, p in oms.positions().items()}, oms.cash(), snapshot).ok

    valuation = value_account(engine, "fx", at=T0 + D, currencies={"SAP": "EUR"})
    (row,) = valuation.rows
    assert row.realised_pnl_base == pytest.approx(100.0)  # booked, not re-converted at today's rate
    assert valuation.fees == pytest.approx(2.3)
    assert valuation.total_pnl == pytest.approx(valuation.equity - 10_000.0)


def test_an_open_foreign_position_is_marked_and_valued_in_base(engine: Engine) -> None:
    _bars(engine, "EURUSD", {T0 - 2 * D: 1.10, T0: 1.20})
    _bars(engine, "SAP", {T0: 110.0})
    oms = OrderManager(engine, "fx-open", initial_cash=10_000.0, currencies={"SAP": "EUR"})
    order = oms.submit(OrderRequest("b", "fx-open", "SAP", Side.BUY, 10.0, decided_at=T0 - D))
    oms.accept(order.id)
    oms.apply_fill(Fill(order.id, "SAP", Side.BUY, 10.0, 100.0, 0.0, T0), "b-1")  # at 1.10
    mark = oms.mark_to_market({"SAP": 110.0}, T0 + D)  # EURUSD 1.20 by then
    assert mark.market_value == pytest.approx(10 * 110.0 * 1.20)
    assert mark.equity == pytest.approx(10_000.0 - 1_100.0 + 1_320.0)
    (row,) = value_account(engine, "fx-open", at=T0 + D, currencies={"SAP": "EUR"}).rows
    # 1,320 USD now - 1,100 USD paid: 110 of price move (at 1.20) and 110 of FX move (on 1,100 EUR)
    assert row.unrealised_pnl_base == pytest.approx(220.0)


def test_a_missing_fx_series_refuses_the_order_before_anything_is_stored(engine: Engine) -> None:
    oms = OrderManager(engine, "fx-none", initial_cash=10_000.0, currencies={"VOD": "GBP"})

    def audit_rows() -> int:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(AuditLogRow)).scalar_one())

    before = audit_rows()
    with pytest.raises(MissingFxRate, match=r"VOD is quoted in GBP.*`fks ingest --symbols GBPUSD`"):
        oms.submit(OrderRequest("v1", "fx-none", "VOD", Side.BUY, 1.0, decided_at=T0))
    with engine.connect() as conn:
        assert list_orders(conn, "fx-none") == []
    assert audit_rows() == before and oms.open_orders() == []
    # a pair stored only after the decision time is no rate for it either (no look-ahead)
    _bars(engine, "GBPUSD", {T0 + D: 1.25})
    with pytest.raises(MissingFxRate, match="GBPUSD bars start at"):
        oms.submit(OrderRequest("v1", "fx-none", "VOD", Side.BUY, 1.0, decided_at=T0))
    order = oms.submit(OrderRequest("v2", "fx-none", "VOD", Side.BUY, 1.0, decided_at=T0 + 2 * D))
    assert order.client_order_id == "v2"


def test_migration_0016_books_what_was_recorded_before_at_rate_one(url: str) -> None:
    from alembic import command
    from sqlalchemy import inspect, text

    from storage.db import _alembic_config, make_engine, migrate

    eng = make_engine(url)
    try:
        config = _alembic_config()
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0015")
            conn.execute(
                text(
                    "INSERT INTO accounts (name, base_currency, initial_cash, cash, created_at) "
                    "VALUES ('old', 'USD', 1000, 899, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO orders (id, client_order_id, account, symbol, side, type, time_in_force,"
                    " quantity, filled_quantity, avg_fill_price, status, created_at, updated_at) VALUES"
                    " ('o1', 'c1', 'old', 'SPY', 'buy', 'market', 'gtc', 1, 1, 100, 'filled', 0, 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO fills (order_id, account, symbol, side, quantity, price, fee, ts,"
                    " broker_fill_id, recorded_at) VALUES ('o1', 'old', 'SPY', 'buy', 1, 100, 1, 0, 'f1', 0)"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO positions (account, symbol, quantity, avg_cost, realised_pnl, "
                    "updated_at) VALUES ('old', 'SPY', 1, 100, 7, 0)"
                )
            )
        migrate(eng)
        with eng.connect() as conn:
            (fill,) = list_fills(conn, "old")
            (position,) = list_positions(conn, "old")
        assert fill.fx_rate == 1.0
        assert (position.avg_cost_base, position.realised_pnl_base) == (100.0, 7.0)
        with eng.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0015")
        assert "fx_rate" not in {c["name"] for c in inspect(eng).get_columns("fills")}
        assert "avg_cost_base" not in {c["name"] for c in inspect(eng).get_columns("positions")}
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM fills")).scalar_one() == 1
        migrate(eng)
    finally:
        eng.dispose()
