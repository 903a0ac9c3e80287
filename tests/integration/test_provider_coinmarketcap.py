"""The CoinMarketCap adapter and ``fks market overview`` against a loopback server playing the
latest listings and quotes from handwritten fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flows.cli.market import market_app
from providers.base import AuthError, NotSupported, RateLimited
from providers.coinmarketcap import QUOTE_COLUMNS, CoinMarketCapProvider
from tests.fixture_server import FixtureServer, Reply, Request
from tests.provider_fakes import RecordingGate, build_at, fast_policy, load_fixture

KEY = "cmc-0b1f-4c2d-SECRET"
POLICY = fast_policy(attempts=2, max_retry_after_s=60.0)


def fixture(name: str) -> Any:
    """A literal CoinMarketCap fixture file, parsed."""
    return load_fixture("coinmarketcap", name)


def route(request: Request) -> Reply:
    """CoinMarketCap's listings and quotes; the key must come in the ``X-CMC_PRO_API_KEY`` header."""
    if {k.lower(): v for k, v in request.headers.items()}.get("x-cmc_pro_api_key") != KEY:
        return Reply(401, fixture("error_1002_key_missing.json"))
    if request.path == "/v1/cryptocurrency/listings/latest":
        body = fixture("listings_latest.json")
        body["data"] = body["data"][: int(request.query.get("limit", 100))]
        return Reply(200, body)
    if request.path == "/v2/cryptocurrency/quotes/latest":
        wanted = request.query.get("symbol", "").split(",")
        body = fixture("quotes_latest_v2.json")
        unknown = [s for s in wanted if s not in body["data"]]
        if unknown:
            message = f'Invalid value for "symbol": "{",".join(unknown)}"'
            return Reply(400, {"status": {"error_code": 400, "error_message": message, "credit_count": 0}})
        body["data"] = {s: body["data"][s] for s in wanted}
        return Reply(200, body)
    return Reply(404, "<html>Not Found</html>")


@pytest.fixture
def server(shared_server: FixtureServer) -> FixtureServer:
    """The module's loopback server playing CoinMarketCap, fresh."""
    return shared_server.reset(route)


def adapter(
    server: FixtureServer, gate: RecordingGate | None = None, key: str | None = KEY
) -> CoinMarketCapProvider:
    """The adapter as the factory builds it, pointed at ``server``; retries do not sleep."""
    return build_at(CoinMarketCapProvider, server.url, POLICY, gate=gate, coinmarketcap_api_key=key)


def test_historical_bars_are_refused_naming_the_plan_without_a_request(server: FixtureServer) -> None:
    gate = RecordingGate()
    provider = adapter(server, gate)
    for timeframe in ("1m", "1h", "1d"):
        with pytest.raises(NotSupported, match=r"paid CoinMarketCap plan \(Hobbyist or above\)"):
            provider.fetch_bars("BTC", timeframe, pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"))
    assert server.requests == [] and gate.acquired == []


def test_listings_are_parsed_and_charged_their_credit_count(server: FixtureServer) -> None:
    gate = RecordingGate()
    got = adapter(server, gate).listings(limit=3)

    assert tuple(got.columns) == QUOTE_COLUMNS
    assert got["symbol"].tolist() == ["BTC", "ETH", "DOGE"]
    assert got["rank"].tolist() == [1, 2, 10]
    btc = got.iloc[0]
    assert (btc["name"], btc["price"], btc["volume_24h"]) == ("Bitcoin", 61234.5678, 35123456789.12)
    assert (btc["market_cap"], btc["percent_change_24h"]) == (1203011234567.8, 1.87)
    assert btc["last_updated"] == pd.Timestamp("2024-03-01 11:59", tz="UTC")
    (request,) = server.requests
    assert request.query == {"start": "1", "limit": "3", "convert": "USD"}
    assert KEY not in request.raw_query
    assert [(c.provider, c.status, c.credits) for c in gate.calls] == [("coinmarketcap", 200, 1.0)]


def test_quotes_pick_the_best_ranked_coin_of_a_shared_symbol(server: FixtureServer) -> None:
    gate = RecordingGate()
    got = adapter(server, gate).quotes(["btc", "ETH"])

    assert got["name"].tolist() == ["Bitcoin", "Ethereum"]  # not "Batcat", which also trades as BTC
    assert got["price"].tolist() == [61234.5678, 3401.25]
    assert server.requests[0].query["symbol"] == "BTC,ETH"
    assert [c.credits for c in gate.calls] == [2.0]
    with pytest.raises(NotSupported, match="ZZZZ"):
        adapter(server).quotes(["ZZZZ"])


def test_error_codes_become_typed_errors(server: FixtureServer) -> None:
    provider = adapter(server)
    server.inject(Reply(401, fixture("error_1002_key_missing.json")))
    with pytest.raises(AuthError, match="FKS_COINMARKETCAP_API_KEY"):
        provider.listings()

    server.inject(*[Reply(429, fixture("error_1008_minute_rate_limit.json"))] * POLICY.retry.attempts)
    with pytest.raises(RateLimited) as minute:
        provider.listings()
    assert minute.value.retry_after == 60.0

    provider.wall_clock = lambda: pd.Timestamp("2024-03-31 12:00", tz="UTC").timestamp()
    server.requests.clear()
    server.inject(Reply(429, fixture("error_1010_monthly_credits.json")))
    with pytest.raises(RateLimited, match="monthly") as month:
        provider.listings()
    assert month.value.retry_after == 12 * 3600.0 and len(server.requests) == 1  # no retry: fail over

    server.inject(Reply(403, fixture("error_1006_plan.json")))
    with pytest.raises(NotSupported, match="plan"):
        provider.listings()

    server.inject(Reply(200, fixture("error_1006_plan.json")))  # the same code in a 200
    with pytest.raises(NotSupported, match="plan"):
        provider.listings()


def test_without_a_key_nothing_is_sent(server: FixtureServer) -> None:
    with pytest.raises(AuthError, match="FKS_COINMARKETCAP_API_KEY"):
        adapter(server, key=None).listings()
    assert server.requests == []


def test_market_overview_prints_the_listings(
    server: FixtureServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FKS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FKS_COINMARKETCAP_BASE_URL", server.url)
    app = typer.Typer()
    app.add_typer(market_app, name="market")
    runner = CliRunner()

    missing = runner.invoke(app, ["market", "overview"])
    assert missing.exit_code == 2 and "set FKS_COINMARKETCAP_API_KEY" in missing.output
    assert server.requests == []

    monkeypatch.setenv("FKS_COINMARKETCAP_API_KEY", KEY)
    done = runner.invoke(app, ["market", "overview", "--limit", "2"])
    assert done.exit_code == 0, done.output
    assert "Bitcoin" in done.output and "61,234.57" in done.output and "1.20T" in done.output
    assert "Ethereum" in done.output and "DOGE" not in done.output
    assert KEY not in done.output
    from storage import open_store
    from storage.market_quotes import list_market_quotes

    engine = open_store(f"sqlite:///{tmp_path / 'fks.db'}")
    with engine.connect() as conn:
        stored = list_market_quotes(conn)
    engine.dispose()
    assert list(stored["symbol"]) == ["BTC", "ETH"] and list(stored["rank"]) == [1, 2]  # the overview's caps
    assert stored["market_cap"].iloc[0] == pytest.approx(1.2e12, rel=0.01)

    monkeypatch.setenv("FKS_COINMARKETCAP_API_KEY", "wrong")
    refused = runner.invoke(app, ["market", "overview"])
    assert refused.exit_code == 2 and "key refused" in refused.output
