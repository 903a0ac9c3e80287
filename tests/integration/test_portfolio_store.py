"""execution.portfolio on a real database: prices and FX rates from stored bars without
look-ahead, an account valued in its currency and in another, equity drawdown, and
reconciliation of the OMS with a real PaperBroker that halts the account on a mismatch."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from execution.broker import Bar, PaperBroker, PaperCosts
from execution.oms import OrderManager, TradingHalted
from execution.orders import Fill, OrderRequest, Side
from execution.portfolio import (
    MissingFxRate,
    MissingPrice,
    UnknownAccount,
    account_drawdown,
    fx_rate,
    last_close,
    reconcile_and_halt,
    value_account,
)
from storage.bars import upsert_bars
from storage.execution import get_trading_state

H = pd.Timedelta(hours=1)


def _store(engine: Engine, symbol: str, timeframe: str, closes: dict[str, float]) -> None:
    index = pd.DatetimeIndex([pd.Timestamp(ts, tz="UTC") for ts in closes], name="ts")
    values = list(closes.values())
    frame = pd.DataFrame(
        {"open": values, "high": values, "low": values, "close": values, "volume": [1.0] * len(values)},
        index=index,
    )
    with engine.begin() as conn:
        upsert_bars(conn, symbol, timeframe, frame, source="test")


def test_fx_rate_uses_only_bars_closed_by_then(engine: Engine) -> None:
    _store(
        engine, "EURUSD", "1h", {"2024-01-02 10:00": 1.10, "2024-01-02 11:00": 1.20, "2024-01-02 12:00": 1.30}
    )
    day = "2024-01-02"
    assert fx_rate(engine, "EUR", "USD", f"{day} 12:00") == 1.20  # the 11:00 bar closed at 12:00
    # the 12:00 bar is still open at 12:30: its close (1.30) is in the future
    assert fx_rate(engine, "EUR", "USD", f"{day} 12:30") == 1.20
    assert fx_rate(engine, "EUR", "USD", f"{day} 13:00") == 1.30
    assert fx_rate(engine, "eur", "usd", f"{day} 13:00", timeframe="1h") == 1.30
    with pytest.raises(MissingFxRate, match=r"EURUSD bars start at 2024-01-02 10:00:00\+00:00"):
        fx_rate(engine, "EUR", "USD", f"{day} 10:59")
    assert fx_rate(engine, "USD", "EUR", f"{day} 12:00") == pytest.approx(1 / 1.20)  # the inverse pair
    assert fx_rate(engine, "GBP", "GBP", f"{day} 12:00") == 1.0
    with pytest.raises(MissingFxRate, match="fks ingest --symbols GBPUSD"):
        fx_rate(engine, "GBP", "USD", f"{day} 12:00")
    with pytest.raises(MissingFxRate, match="neither EURUSD nor USDEUR has 1d bars"):
        fx_rate(engine, "EUR", "USD", f"{day} 13:00", timeframe="1d")

    # a finer timeframe that closed later wins; one that closes after `at` does not
    _store(engine, "EURUSD", "1m", {"2024-01-02 12:10": 1.25, "2024-01-02 12:29": 1.27})
    assert fx_rate(engine, "EUR", "USD", f"{day} 12:29:59") == 1.25
    assert fx_rate(engine, "EUR", "USD", f"{day} 12:30") == 1.27
    quote = last_close(engine, "EURUSD", f"{day} 12:30")
    assert quote is not None and (quote.timeframe, quote.ts) == ("1m", pd.Timestamp(f"{day} 12:29", tz="UTC"))
    assert quote.closed_at == pd.Timestamp(f"{day} 12:30", tz="UTC")
    assert last_close(engine, "EURUSD", f"{day} 10:30") is None


def _trade(oms: OrderManager, cid: str, symbol: str, quantity: float, price: float, fee: float) -> None:
    side = Side.BUY if quantity > 0 else Side.SELL
    order = oms.submit(OrderRequest(cid, oms.account, symbol, side, abs(quantity)))
    oms.accept(order.id)
    oms.apply_fill(
        Fill(order.id, symbol, side, abs(quantity), price, fee, pd.Timestamp("2024-01-02", tz="UTC")), cid
    )


def test_an_account_valued_in_its_currency_and_in_eur(engine: Engine) -> None:
    oms = OrderManager(engine, "desk", initial_cash=10_000.0, currencies={"SAP": "EUR"})
    # EUR at 1.10 USD when SAP is bought (the bar closed at 2024-01-01 23:00), 1.20 at valuation
    eurusd = {"2024-01-01 22:00": 1.10, "2024-01-02 22:00": 1.20, "2024-01-03 00:00": 9.0}
    _store(engine, "EURUSD", "1h", eurusd)
    _trade(oms, "b-spx", "SPX", 2, 100.0, 0.5)
    _trade(oms, "s-tsla", "TSLA", -4, 50.0, 0.25)  # a short
    _trade(oms, "b-sap", "SAP", 10, 50.0, 0.25)  # quoted in EUR: 500.25 EUR = 550.275 USD at 1.10
    _store(engine, "SPX", "1d", {"2024-01-02": 110.0, "2024-01-03": 999.0})  # the 01-03 bar closes 01-04
    _store(engine, "TSLA", "1d", {"2024-01-02": 40.0})
    _store(engine, "SAP", "1d", {"2024-01-02": 55.0})
    at = "2024-01-03 00:00"

    v = value_account(engine, "desk", at=at, currencies={"SAP": "EUR"})
    rows = {r.symbol: r for r in v.rows}
    cash = 10_000.0 - 200.5 + 199.75 - 550.275
    assert v.base == "USD" and v.cash == pytest.approx(cash) and v.fees == pytest.approx(0.75 + 0.275)
    assert rows["SPX"].price == 110.0 and rows["SPX"].unrealised_pnl_base == pytest.approx(20.0)
    assert rows["TSLA"].market_value_base == pytest.approx(-160.0)
    assert rows["TSLA"].unrealised_pnl_base == pytest.approx(40.0)  # short 4 from 50 to 40
    assert (rows["SAP"].fx, rows["SAP"].market_value_base) == (1.20, pytest.approx(660.0))
    # 10 * 55 EUR * 1.20 - the 550 USD it cost (10 * 50 EUR at 1.10): the price and the FX move
    assert rows["SAP"].unrealised_pnl_base == pytest.approx(110.0)
    assert rows["SAP"].avg_cost == 50.0  # quote currency
    assert v.equity == pytest.approx(cash + 220.0 - 160.0 + 660.0)
    assert v.gross_exposure == pytest.approx(1_040.0)
    assert v.prices_as_of["SPX"] == pd.Timestamp("2024-01-02", tz="UTC")
    assert v.at == pd.Timestamp(at, tz="UTC")

    eur = value_account(engine, "desk", at=at, base="EUR", currencies={"SAP": "EUR"})
    assert eur.base == "EUR" and eur.cash == pytest.approx(cash / 1.20)
    assert eur.equity == pytest.approx(v.equity / 1.20)
    assert {r.symbol: r.fx for r in eur.rows}["SAP"] == 1.0

    with pytest.raises(MissingPrice, match="fks ingest --symbols SAP"):
        value_account(engine, "desk", at="2024-01-02 12:00")
    with pytest.raises(MissingFxRate, match=r"cannot convert EUR into GBP.*ingest EURGBP or GBPEUR"):
        value_account(engine, "desk", at=at, base="GBP", currencies={"SAP": "EUR"})
    with pytest.raises(UnknownAccount, match="nope"):
        value_account(engine, "nope")


def test_account_drawdown_from_equity_marks(engine: Engine) -> None:
    oms = OrderManager(engine, "desk", initial_cash=1_000.0)
    assert account_drawdown(engine, "desk") is None
    _trade(oms, "b1", "SPX", 1, 100.0, 0.0)
    start = pd.Timestamp("2024-01-02", tz="UTC")
    for i, price in enumerate([100.0, 140.0, 60.0, 120.0]):
        oms.mark_to_market({"SPX": price}, start + i * H)
    dd = account_drawdown(engine, "desk")
    assert dd is not None and dd.points == 4 and dd.peak == 1_040.0
    assert dd.max == pytest.approx(960 / 1_040 - 1) and dd.current == pytest.approx(1_020 / 1_040 - 1)
    since = account_drawdown(engine, "desk", since=start + 2 * H)
    assert since is not None and since.points == 2 and since.max == 0.0


def test_reconcile_and_halt_with_the_paper_broker(engine: Engine) -> None:
    oms = OrderManager(engine, "paper", initial_cash=100_000.0)
    broker = PaperBroker(PaperCosts(volume_share=None), account="paper", cash=100_000.0)
    calls: list[tuple[str, dict[str, Any]]] = []

    def notify(event: str, details: dict[str, Any]) -> None:
        calls.append((event, details))

    t0 = pd.Timestamp("2024-01-02 10:00", tz="UTC")
    broker.on_bar("SPY", Bar(t0, 100.0, 101.0, 99.0, 100.5, 1_000.0))

    def trade(cid: str, side: Side, quantity: float, bar_ts: pd.Timestamp, *, book: bool) -> None:
        order = oms.submit(OrderRequest(cid, "paper", "SPY", side, quantity, decided_at=t0))
        assert broker.submit(order.broker_request, decided_at=bar_ts - H).accepted
        oms.accept(order.id)
        fills = broker.on_bar("SPY", Bar(bar_ts, 101.0, 102.0, 100.0, 101.5, 1_000.0))
        assert len(fills) == 1
        if book:
            oms.apply_fill(fills[0], fills[0].broker_fill_id)

    trade("buy-1", Side.BUY, 10, t0 + H, book=True)
    matched = reconcile_and_halt(oms, broker, notify)
    assert matched.ok and calls == []
    assert not oms.trading_state().halted

    trade("sell-1", Side.SELL, 4, t0 + 2 * H, book=False)  # the broker filled it; the OMS never heard
    result = reconcile_and_halt(oms, broker, notify)
    assert not result.ok
    assert [m.symbol for m in result.mismatches] == ["cash", "SPY"]
    assert (result.mismatches[1].ours, result.mismatches[1].theirs) == (10.0, 6.0)
    with engine.connect() as conn:
        state = get_trading_state(conn, "paper")
    assert state.halted and state.reason is not None and "SPY: ours 10, broker 6" in state.reason
    with pytest.raises(TradingHalted):
        oms.submit(OrderRequest("buy-2", "paper", "SPY", Side.BUY, 1))
    assert len(calls) == 1
    event, details = calls[0]
    assert event == "halt" and details["account"] == "paper" and details["reason"] == state.reason
    assert [m["symbol"] for m in details["reconciliation"]["mismatches"]] == ["cash", "SPY"]

    assert not reconcile_and_halt(oms, broker, notify).ok
    assert len(calls) == 1  # halted for that reason already: not notified again

    missed = broker.fills()[-1]
    oms.apply_fill(missed, missed.broker_fill_id)  # the missing fill booked: the books agree again
    assert reconcile_and_halt(oms, broker, notify).ok
    assert oms.trading_state().halted  # resuming stays a person's decision (`fks resume`)
