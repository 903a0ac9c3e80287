"""execution.portfolio's pure parts: the valuation against hand-computed figures (a short
position, a EUR-quoted asset), reconciliation's tolerance and flat positions, the drawdown of
equity marks, and AssetSpec's currency."""

from __future__ import annotations

import math
from types import MappingProxyType

import pandas as pd
import pytest
from pydantic import ValidationError

from config.assets import AssetSpec
from execution.broker import AccountSnapshot
from execution.portfolio import (
    CASH,
    Mismatch,
    MissingFxRate,
    MissingPrice,
    drawdown,
    reconcile,
    value_book,
)
from storage.execution import Position

TS = pd.Timestamp("2024-01-02", tz="UTC")


def _pos(symbol: str, quantity: float, avg_cost: float, realised: float = 0.0) -> Position:
    return Position("paper", symbol, quantity, avg_cost, realised, TS)


BOOK = {
    "SPY": _pos("SPY", 10, 100.0, realised=5.0),  # long, USD
    "TSLA": _pos("TSLA", -5, 200.0),  # short, USD
    "SAP": _pos("SAP", 20, 50.0, realised=10.0),  # long, quoted in EUR
    "OLD": _pos("OLD", 0, 0.0, realised=-3.0),  # flat, realised a loss
    "NIL": _pos("NIL", 0, 0.0),  # flat, nothing realised: not a row
}
PRICES = {"SPY": 110.0, "TSLA": 180.0, "SAP": 55.0}
CURRENCIES = {"SAP": "EUR"}


def test_value_book_matches_hand_computed_figures() -> None:
    v = value_book(BOOK, 10_000.0, PRICES, CURRENCIES, "USD", {"EUR": 1.10}, fees=2.5)

    rows = {r.symbol: r for r in v.rows}
    assert list(rows) == ["OLD", "SAP", "SPY", "TSLA"]
    spy, tsla, sap, old = rows["SPY"], rows["TSLA"], rows["SAP"], rows["OLD"]
    assert (spy.market_value_base, spy.unrealised_pnl_base, spy.realised_pnl_base) == pytest.approx(
        (1_100.0, 100.0, 5.0)
    )
    # a short of 5 entered at 200, now 180: worth -900, gained 5 * 20 = 100
    assert (tsla.market_value_base, tsla.unrealised_pnl_base) == pytest.approx((-900.0, 100.0))
    # 20 SAP at 55 EUR, entered at 50, EURUSD 1.10: 1210 USD, unrealised 20 * 5 * 1.1 = 110 USD
    assert (sap.currency, sap.fx, sap.price) == ("EUR", 1.10, 55.0)
    assert (sap.market_value_base, sap.unrealised_pnl_base, sap.realised_pnl_base) == pytest.approx(
        (1_210.0, 110.0, 11.0)
    )
    assert (old.price, old.market_value_base, old.realised_pnl_base) == (None, 0.0, -3.0)

    assert v.base == "USD" and v.cash == 10_000.0 and v.fees == 2.5
    assert v.market_value == pytest.approx(1_410.0)
    assert v.equity == pytest.approx(11_410.0)
    assert v.gross_exposure == pytest.approx(3_210.0)
    assert v.net_exposure == pytest.approx(1_410.0)
    assert v.unrealised_pnl == pytest.approx(310.0)
    assert v.realised_pnl == pytest.approx(13.0)
    assert v.total_pnl == pytest.approx(320.5)
    payload = v.to_dict()
    assert payload["equity"] == pytest.approx(11_410.0)
    assert [p["symbol"] for p in payload["positions"]] == ["OLD", "SAP", "SPY", "TSLA"]


def test_value_book_in_eur_converts_the_usd_assets() -> None:
    """The same book valued in EUR (cash given in EUR): the USD rows convert at 1/1.1."""
    usd_to_eur = 1 / 1.10
    v = value_book(BOOK, 9_000.0, PRICES, CURRENCIES, "eur", {"USD": usd_to_eur})
    rows = {r.symbol: r for r in v.rows}
    assert rows["SAP"].fx == 1.0 and rows["SAP"].market_value_base == pytest.approx(1_100.0)
    assert rows["SPY"].market_value_base == pytest.approx(1_000.0)
    assert rows["TSLA"].unrealised_pnl_base == pytest.approx(100.0 * usd_to_eur)
    assert v.base == "EUR" and v.equity == pytest.approx(9_000.0 + 1_100.0 + 1_000.0 - 900.0 * usd_to_eur)


def test_value_book_refuses_a_missing_price_or_rate() -> None:
    with pytest.raises(MissingPrice, match="TSLA"):
        value_book(BOOK, 0.0, {"SPY": 110.0, "SAP": 55.0}, CURRENCIES, "USD", {"EUR": 1.1})
    with pytest.raises(MissingPrice, match="SPY"):
        value_book(BOOK, 0.0, {**PRICES, "SPY": math.nan}, CURRENCIES, "USD", {"EUR": 1.1})
    with pytest.raises(MissingFxRate, match="EUR->USD"):
        value_book(BOOK, 0.0, PRICES, CURRENCIES, "USD", {})
    with pytest.raises(ValueError, match="three-letter"):
        value_book(BOOK, 0.0, PRICES, CURRENCIES, "DOLLARS", {"EUR": 1.1})


def _snapshot(cash: float, **positions: float) -> AccountSnapshot:
    return AccountSnapshot(cash, MappingProxyType(positions), cash, 0.0)


def test_reconcile_agrees_within_tolerance_and_ignores_flat_positions() -> None:
    result = reconcile({"SPY": 10.0, "OLD": 0.0}, 100_000.0, _snapshot(100_000.00001, SPY=10.0 + 1e-9))
    assert result.ok and result.mismatches == []
    assert "agree" in result.message
    assert reconcile({}, 0.0, _snapshot(0.0, ETH=0.0)).ok  # flat on one side, absent on the other


def test_reconcile_names_each_difference() -> None:
    result = reconcile({"SPY": 10.0, "QQQ": 3.0}, 1_000.0, _snapshot(1_100.0, SPY=12.0, BTC=0.5))
    assert not result.ok
    assert result.mismatches == [
        Mismatch(CASH, 1_000.0, 1_100.0),
        Mismatch("BTC", 0.0, 0.5),
        Mismatch("QQQ", 3.0, 0.0),
        Mismatch("SPY", 10.0, 12.0),
    ]
    assert result.mismatches[-1].difference == -2.0
    assert "4 mismatch(es)" in result.message and "SPY: ours 10, broker 12" in result.message
    # relative above one unit, absolute below
    assert not reconcile({}, 1e6, _snapshot(1e6 + 2.0), tolerance=1e-6).ok
    assert reconcile({}, 1e6, _snapshot(1e6 + 0.5), tolerance=1e-6).ok
    assert not reconcile({"X": 1e-5}, 0.0, _snapshot(0.0), tolerance=1e-6).ok
    with pytest.raises(ValueError, match="tolerance"):
        reconcile({}, 0.0, _snapshot(0.0), tolerance=-1.0)


def test_drawdown_of_equity_marks() -> None:
    index = pd.date_range("2024-01-01", periods=5, freq="D", tz="UTC")
    dd = drawdown(pd.Series([100.0, 120.0, 90.0, 110.0, 108.0], index=index))
    assert dd is not None
    assert (dd.points, dd.peak, dd.peak_at, dd.last, dd.last_at) == (5, 120.0, index[1], 108.0, index[4])
    assert dd.current == pytest.approx(108 / 120 - 1)
    assert dd.max == pytest.approx(90 / 120 - 1)
    assert drawdown(pd.Series([], dtype=float)) is None
    rising = drawdown(pd.Series([1.0, 2.0], index=index[:2]))
    assert rising is not None and rising.max == 0.0 and rising.current == 0.0


def test_asset_currency_defaults_to_usd_and_is_validated() -> None:
    assert AssetSpec(symbol="SPY").currency == "USD"
    assert AssetSpec(symbol="SAP", currency="eur").currency == "EUR"
    with pytest.raises(ValidationError, match="three-letter"):
        AssetSpec(symbol="SAP", currency="EURO")
    with pytest.raises(ValidationError, match="three-letter"):
        AssetSpec(symbol="SAP", currency="E1R")
