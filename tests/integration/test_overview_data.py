"""The overview's figures without a browser (:mod:`serving.overview`), on real stores (SQLite, and
PostgreSQL with ``TEST_POSTGRES_URL``): listing changes and volumes from the stored bars, data
health (gaps, pending quarantine, the last cross-check), movers, the paper book as ``fks pnl``
values it; and the page's auth: shells without figures, data routes only with a key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from config.assets import AssetSpec
from config.settings import Settings
from execution.oms import OrderManager
from execution.orders import Fill, OrderRequest, OrderType, Side
from execution.portfolio import value_account
from market.bars import canonical_bars
from serving import overview as ov
from storage import QuarantinedRow, quarantine_rows, upsert_assets, upsert_bars
from storage.market_quotes import list_market_quotes, store_market_quotes
from storage.verifications import record_verification

NOW = pd.Timestamp("2024-03-11 12:00", tz="UTC")


def _bars(index: pd.DatetimeIndex, closes: np.ndarray, volume: float = 10.0) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"open": closes, "high": closes * 1.01, "low": closes * 0.99, "close": closes, "volume": volume},
        index=index.rename("ts"),
    )
    return canonical_bars(frame)


def _store(engine: Engine) -> dict[str, pd.DataFrame]:
    """BTC-USD hourly (24/7) for 10 days with a 3-hour hole; ACME daily (XNYS) for 30 sessions."""
    hours = pd.date_range(NOW - pd.Timedelta(days=10), NOW - pd.Timedelta(hours=1), freq="1h")
    hours = hours.delete([20, 21, 22])  # a hole more than 7 days back
    btc = _bars(hours, 100.0 * np.exp(np.linspace(0.0, 0.2, len(hours))), volume=2.0)
    days = pd.DatetimeIndex(pd.bdate_range("2024-01-29", "2024-03-08", tz="UTC"))
    days = days[days != pd.Timestamp("2024-02-19", tz="UTC")]  # Presidents' Day: XNYS is closed
    acme = _bars(days, np.linspace(50.0, 40.0, len(days)))
    with engine.begin() as conn:
        upsert_assets(
            conn,
            [
                AssetSpec(
                    symbol="BTC-USD",
                    asset_class="crypto",
                    calendar="24/7",
                    timeframe="1h",
                    provider_symbols={"coinmarketcap": "BTC"},
                ),
                AssetSpec(symbol="ACME", asset_class="equity", calendar="XNYS", timeframe="1d"),
                AssetSpec(symbol="NONE", asset_class="equity", calendar="XNYS", timeframe="1d"),  # no bars
            ],
        )
        upsert_bars(conn, "BTC-USD", "1h", btc, source="test")
        upsert_bars(conn, "ACME", "1d", acme, source="test")
        quarantine_rows(
            conn, symbol="ACME", timeframe="1d", source="test",
            rows=[QuarantinedRow(days[3], {"close": 0.0}, ["prices_positive"], "close <= 0"),
                  QuarantinedRow(days[4], {"close": -1.0}, ["prices_positive"], "close <= 0")],
        )  # fmt: skip
        coins = [("BTC", "Bitcoin", 1.2e12), ("ETH", "Ethereum", 0.6e12), ("DOGE", "Dogecoin", 0.2e12)]
        listing = pd.DataFrame(
            [
                {"rank": i + 1, "symbol": symbol, "name": name, "price": cap / 2e7, "volume_24h": cap / 40,
                 "market_cap": cap, "percent_change_24h": 1.0, "last_updated": NOW}
                for i, (symbol, name, cap) in enumerate(coins)
            ]
        )  # fmt: skip
        store_market_quotes(conn, listing, source="coinmarketcap", currency="USD")
        record_verification(
            conn, symbol="BTC-USD", timeframe="1h", primary_provider="binance", secondary_provider="yahoo",
            status="verified", checked_at=NOW - pd.Timedelta(days=1),
        )  # fmt: skip
        record_verification(
            conn, symbol="BTC-USD", timeframe="1h", primary_provider="binance", secondary_provider="yahoo",
            status="discrepant", discrepancies=2, checked_at=NOW - pd.Timedelta(hours=2),
        )  # fmt: skip
    return {"BTC-USD": btc, "ACME": acme}


def test_listings_changes_volumes_and_health(engine: Engine) -> None:
    stored = _store(engine)
    with engine.connect() as conn:
        rows = {r.symbol: r for r in ov.listings(conn, NOW)}
    assert sorted(rows) == ["ACME", "BTC-USD"]  # NONE has no bars
    btc, acme = rows["BTC-USD"], rows["ACME"]
    closes = stored["BTC-USD"]["close"]
    last = closes.iloc[-1]
    assert btc.last_price == last and btc.last_ts == closes.index[-1]
    assert btc.change_1bar == pytest.approx(last / closes.iloc[-2] - 1)
    assert btc.change_24h == pytest.approx(last / closes.iloc[-25] - 1)  # the close 24 hours before
    assert btc.change_7d == pytest.approx(last / closes.iloc[-1 - 7 * 24] - 1)
    assert btc.volume_24h == pytest.approx(2.0 * 24)  # the last 24 hourly bars
    assert btc.spark[-1] == last and 2 <= len(btc.spark) <= ov.SPARK_POINTS
    assert btc.health.gaps == 1 and btc.health.missing_bars == 3
    assert btc.health.last_bar_age_s == pytest.approx(3600.0)
    assert btc.health.cross_check == "discrepant"  # the latest check, not the earlier one
    assert btc.health.quarantined == 0
    a = stored["ACME"]["close"]
    assert acme.change_24h == pytest.approx(a.iloc[-1] / a.iloc[-2] - 1)  # Friday's close vs Thursday's
    assert acme.change_7d == pytest.approx(a.iloc[-1] / a.iloc[-6] - 1)  # vs the Friday a week before
    assert acme.health.gaps == 0 and acme.health.quarantined == 2 and acme.health.cross_check is None
    assert acme.market_cap is None and acme.rank is None  # not a listed coin
    assert (btc.market_cap, btc.rank) == (1.2e12, 1)  # from the stored CoinMarketCap listing

    gainers, losers = ov.movers(list(rows.values()))
    assert [g.symbol for g in gainers] == ["BTC-USD"] and [s.symbol for s in losers] == ["ACME"]
    with engine.connect() as conn:
        quotes = list_market_quotes(conn)
    assert list(quotes["symbol"]) == ["BTC", "ETH", "DOGE"]
    assert ov.dominance(quotes) == {"BTC": pytest.approx(0.6), "ETH": pytest.approx(0.3)}
    assert ov.dominance(quotes.iloc[0:0]) == {}
    points = ov.spark_points([1.0, 3.0, 2.0]).split()
    assert points == ["0.0,24.0", "50.0,0.0", "100.0,12.0"]


def test_the_book_is_valued_as_fks_pnl_values_it(engine: Engine, tmp_path: Path) -> None:
    stored = _store(engine)
    acme = stored["ACME"]["close"]
    oms = OrderManager(engine, "default", initial_cash=10_000.0)
    order = oms.submit(OrderRequest("b1", "default", "ACME", Side.BUY, 20.0))
    oms.accept(order.id)
    oms.apply_fill(Fill(order.id, "ACME", Side.BUY, 20.0, float(acme.iloc[0]), 1.5, acme.index[0]), "f1")
    for ts, close in acme.items():
        oms.mark_to_market({"ACME": float(close)}, ts + pd.Timedelta(hours=21))
    limit = OrderRequest("l1", "default", "ACME", Side.SELL, 5.0, OrderType.LIMIT, limit_price=60.0)
    oms.accept(oms.submit(limit).id)
    oms.halt("test: too many losses")
    settings = Settings(data_dir=tmp_path)
    at = acme.index[-1] + pd.Timedelta(days=1, hours=12)  # the Saturday after the last session
    with engine.connect() as conn:
        [book] = ov.books(conn, settings, at)
        valued = value_account(conn, "default", at=at)
    assert book.account == "default" and book.base == "USD"
    assert book.equity == pytest.approx(valued.equity) and book.cash == pytest.approx(valued.cash)
    assert book.total_pnl == pytest.approx(valued.total_pnl)
    assert book.today_pnl == pytest.approx(0.0)  # no price since the last mark before today
    [position] = book.positions
    assert (position.symbol, position.quantity, position.price) == ("ACME", 20.0, acme.iloc[-1])
    assert position.unrealised_pnl == pytest.approx(20.0 * (acme.iloc[-1] - acme.iloc[0]))
    [open_order] = book.orders
    assert (open_order.side, open_order.limit_price, open_order.quantity) == ("sell", 60.0, 5.0)
    assert len(book.equity_curve) == len(acme)
    first = book.equity_curve[0][1]
    assert book.buy_and_hold[0][1] == pytest.approx(first)  # both start at the first mark's equity
    assert book.buy_and_hold[-1][1] == pytest.approx(first * acme.iloc[-1] / acme.iloc[0])
    assert book.halted and book.halt_reason == "test: too many losses"
    limits = {limit.name: limit for limit in book.limits}
    assert limits["gross exposure"].used == pytest.approx(20.0 * acme.iloc[-1])
    assert limits["drawdown"].used > 0  # ACME only fell


def _app(engine: Engine, tmp_path: Path, auth: bool) -> TestClient:
    from serving.app import create_app

    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(
        data_dir=tmp_path,
        db_url=url,
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        serve_auth=auth,
    )
    return TestClient(create_app(settings, slots=[]))


@pytest.mark.slow
def test_the_pages_show_figures_only_with_a_key(engine: Engine, tmp_path: Path) -> None:
    from storage.api_keys import create_api_key

    stored = _store(engine)
    price = f"{stored['ACME']['close'].iloc[-1]:,.2f}"
    with engine.begin() as conn:
        _, key = create_api_key(conn, "researcher")
    with _app(engine, tmp_path, auth=True) as client:
        shell = client.get("/")
        assert shell.status_code == 200 and "ACME" not in shell.text and 'data-auth="on"' in shell.text
        assert client.get("/assets/ACME").status_code == 200
        assert client.get("/static/overview.js").status_code == 200
        vendor = "/static/vendor/lightweight-charts/lightweight-charts.standalone.production.js"
        assert client.get(vendor).status_code == 200
        for route in ("/v1/overview", "/v1/overview/html", "/v1/overview/assets/ACME"):
            refused = client.get(route)
            assert refused.status_code == 401 and "fks keys create" in refused.json()["error"]
        answer = client.get("/v1/overview", headers={"X-API-Key": key})
        assert answer.status_code == 200
        listed = {r["symbol"]: r for r in answer.json()["listings"]}
        assert listed["ACME"]["last_price"] == stored["ACME"]["close"].iloc[-1]
        fragment = client.get("/v1/overview/html", headers={"X-API-Key": key}).text
        assert 'data-symbol="ACME"' in fragment and price in fragment
        chart = client.get("/v1/overview/assets/acme", headers={"X-API-Key": key}).json()
        assert len(chart["bars"]) == len(stored["ACME"]) and len(chart["quarantined"]) == 2
        assert {"sma_20", "ema_20", "bb_upper_20_2"} <= set(chart["overlays"])
        missing = client.get("/v1/overview/assets/NOPE", headers={"X-API-Key": key})
        assert missing.status_code == 404 and "no registered asset 'NOPE'" in missing.json()["error"]
    with _app(engine, tmp_path, auth=False) as client:
        page = client.get("/").text
        assert 'data-auth="off"' in page and 'data-symbol="ACME"' in page and price in page
