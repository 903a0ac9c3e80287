"""The Alpha Vantage adapter against a loopback server playing ``/query`` from handwritten fixtures."""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd
import pytest

from providers.alphavantage import AlphaVantageProvider, months_between
from providers.base import AuthError, NotSupported, ProviderError, RateLimited
from tests.fixture_server import FixtureServer, Reply, Request, server_error
from tests.provider_fakes import FIXTURES, build_at, canonical, fast_policy, load_fixture

KEY = "AVKEY-7f3a9c-SECRET"
POLICY = fast_policy(max_retry_after_s=60.0)
BAD_KEY = {"Error Message": "the parameter apikey is invalid or missing. Please claim your free API key."}


def fixture(name: str) -> Any:
    """A literal Alpha Vantage fixture file, parsed."""
    return load_fixture("alphavantage", name)


def route(request: Request) -> Reply:
    """Alpha Vantage's ``/query``: the fixture named by function, symbol, interval and month."""
    q = request.query
    if request.path != "/query":
        return Reply(404, "<html>Not Found</html>")
    if q.get("apikey") != KEY:
        return Reply(200, BAD_KEY)
    function = q.get("function")
    if function == "TIME_SERIES_INTRADAY":
        name = f"intraday_{q.get('interval')}_{q.get('symbol')}_{q.get('month')}.json"
    elif function == "TIME_SERIES_DAILY":
        name = f"daily_{q.get('symbol')}.json"
    elif function == "DIGITAL_CURRENCY_DAILY":
        name = f"digital_daily_{q.get('symbol')}_{q.get('market')}.json"
    else:
        name = "error_invalid_call.json"
    path = FIXTURES / "alphavantage" / name
    return Reply(200, json.loads(path.read_text()) if path.exists() else fixture("error_invalid_call.json"))


@pytest.fixture
def server(shared_server: FixtureServer) -> FixtureServer:
    """The module's loopback server playing Alpha Vantage, fresh."""
    return shared_server.reset(route)


def adapter(
    server: FixtureServer, sleeps: list[float] | None = None, key: str | None = KEY
) -> AlphaVantageProvider:
    """The adapter as the factory builds it, pointed at ``server``; waits are recorded, not slept."""
    sleep = sleeps.append if sleeps is not None else None
    return build_at(AlphaVantageProvider, server.url, POLICY, sleep=sleep, alphavantage_api_key=key)


def test_intraday_pages_month_by_month_and_converts_eastern_time_to_utc(server: FixtureServer) -> None:
    got = adapter(server).fetch_bars(
        "IBM", "1m", pd.Timestamp("2024-01-31 20:58", tz="UTC"), pd.Timestamp("2024-02-01 14:31", tz="UTC")
    )

    # EST is UTC-5: 15:58 ET -> 20:58 UTC; 04:00 ET -> 09:00 UTC; 09:31 ET is 14:31 UTC (end, excluded)
    expected = canonical(
        [
            ("2024-01-31 20:58", 183.50, 183.64, 183.48, 183.61, 23807),
            ("2024-01-31 20:59", 183.62, 183.70, 183.55, 183.66, 61250),
            ("2024-02-01 09:00", 183.70, 183.70, 183.70, 183.70, 12),
            ("2024-02-01 14:30", 183.63, 183.99, 183.60, 183.90, 98122),
        ]
    )
    pd.testing.assert_frame_equal(got, expected)
    months = [r.query.get("month") for r in server.requests]
    assert months == ["2024-01", "2024-02"]
    assert all(r.query["outputsize"] == "full" and r.query["interval"] == "1min" for r in server.requests)


def test_hour_bars_follow_daylight_saving_time(server: FixtureServer) -> None:
    got = adapter(server).fetch_bars("IBM", "1h", pd.Timestamp("2024-03-08"), pd.Timestamp("2024-03-12"))

    # 09:00 EST on 8 March is 14:00 UTC; after the switch on 10 March 09:00 EDT is 13:00 UTC
    assert list(got.index) == [
        pd.Timestamp("2024-03-08 14:00", tz="UTC"),
        pd.Timestamp("2024-03-11 13:00", tz="UTC"),
    ]
    assert server.requests[0].query["interval"] == "60min" and len(server.requests) == 1


def test_months_are_eastern_calendar_months() -> None:
    # 03:00 UTC on 1 February is still 31 January in New York
    assert months_between(
        pd.Timestamp("2024-02-01 03:00", tz="UTC"), pd.Timestamp("2024-02-01 06:00", tz="UTC")
    ) == [
        "2024-01",
        "2024-02",
    ]
    assert months_between(pd.Timestamp("2023-11-15", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")) == [
        "2023-11",
        "2023-12",
        "2024-01",
    ]


def test_daily_bars_are_dates_at_midnight_utc(server: FixtureServer) -> None:
    provider = adapter(server)
    provider.wall_clock = lambda: pd.Timestamp("2024-09-01", tz="UTC").timestamp()
    got = provider.fetch_bars("IBM", "1d", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-04"))

    expected = canonical(
        [
            ("2024-01-02", 162.83, 163.29, 160.00, 161.50, 3527212),
            ("2024-01-03", 161.00, 161.73, 160.08, 160.10, 4086739),
        ]
    )
    pd.testing.assert_frame_equal(got, expected)
    assert server.requests[0].query["outputsize"] == "full"

    provider.wall_clock = lambda: pd.Timestamp("2024-01-10", tz="UTC").timestamp()
    provider.fetch_bars("IBM", "1d", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-04"))
    assert server.requests[-1].query["outputsize"] == "compact"  # the last 100 sessions cover it


def test_crypto_days_from_digital_currency_daily(server: FixtureServer) -> None:
    got = adapter(server).fetch_bars(
        "CRYPTO:BTC", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-03")
    )

    expected = canonical(
        [
            ("2024-01-01", 42283.58, 44184.10, 42180.77, 44179.55, 1207.2891717),
            ("2024-01-02", 44167.33, 45899.00, 44150.00, 44943.71, 2311.6821375),
        ]
    )
    pd.testing.assert_frame_equal(got, expected)
    query = server.requests[0].query
    assert (query["function"], query["symbol"], query["market"]) == ("DIGITAL_CURRENCY_DAILY", "BTC", "USD")


def test_crypto_in_the_older_field_layout_and_another_market(server: FixtureServer) -> None:
    layout = {
        "Meta Data": {"7. Time Zone": "UTC"},
        "Time Series (Digital Currency Daily)": {
            "2024-01-01": {
                "1a. open (EUR)": "38300.1",
                "1b. open (USD)": "42283.58",
                "2a. high (EUR)": "40000.0",
                "2b. high (USD)": "44184.10",
                "3a. low (EUR)": "38200.0",
                "3b. low (USD)": "42180.77",
                "4a. close (EUR)": "39990.5",
                "4b. close (USD)": "44179.55",
                "5. volume": "1207.2891717",
                "6. market cap (USD)": "1207.2891717",
            }
        },
    }
    server.inject(Reply(200, layout))
    got = adapter(server).fetch_bars("CRYPTO:BTC:EUR", "1d")
    assert got.iloc[0].tolist() == [38300.1, 40000.0, 38200.0, 39990.5, 1207.2891717]
    assert server.requests[0].query["market"] == "EUR"


def test_crypto_below_a_day_is_not_supported_without_a_request(server: FixtureServer) -> None:
    with pytest.raises(NotSupported, match="day bars only"):
        adapter(server).fetch_bars("CRYPTO:ETH", "1h", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"))
    assert server.requests == []


def test_a_throttling_note_is_a_rate_limit_then_data_arrives(server: FixtureServer) -> None:
    sleeps: list[float] = []
    server.inject(Reply(200, fixture("note_per_minute.json")))
    got = adapter(server, sleeps).fetch_bars(
        "IBM", "1d", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-05")
    )

    assert len(got) == 3 and got["close"].tolist() == [161.5, 160.1, 161.1]  # data, not the note
    assert sleeps == [60.0] and len(server.requests) == 2


def test_a_note_that_persists_raises_rate_limited_and_never_becomes_data(server: FixtureServer) -> None:
    sleeps: list[float] = []
    server.inject(*[Reply(200, fixture("note_per_minute.json"))] * 3)
    with pytest.raises(RateLimited) as caught:
        adapter(server, sleeps).fetch_bars(
            "IBM", "1d", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-05")
        )
    assert caught.value.retry_after == 60.0
    assert len(server.requests) == POLICY.retry.attempts and sleeps == [60.0, 60.0]


def test_the_daily_allowance_waits_until_utc_midnight_so_the_caller_fails_over(server: FixtureServer) -> None:
    sleeps: list[float] = []
    provider = adapter(server, sleeps)
    provider.wall_clock = lambda: pd.Timestamp("2024-01-10 18:00", tz="UTC").timestamp()
    server.inject(Reply(200, fixture("information_daily_limit.json")))
    with pytest.raises(RateLimited, match="daily allowance") as caught:
        provider.fetch_bars("IBM", "1d", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-05"))
    assert caught.value.retry_after == 6 * 3600.0
    assert len(server.requests) == 1 and sleeps == []  # longer than any retry wait: no retry


def test_error_message_and_premium_notes_are_not_supported(server: FixtureServer) -> None:
    provider = adapter(server)
    with pytest.raises(NotSupported, match="Invalid API call"):
        provider.fetch_bars("NOPE", "1d")
    server.inject(Reply(200, fixture("information_premium.json")))
    with pytest.raises(NotSupported, match="premium"):
        provider.fetch_bars("IBM", "1d")


def test_a_missing_or_refused_key_is_an_auth_error(server: FixtureServer) -> None:
    with pytest.raises(AuthError, match="FKS_ALPHAVANTAGE_API_KEY"):
        adapter(server, key=None).fetch_bars("IBM", "1d")
    assert server.requests == []
    with pytest.raises(AuthError, match="refused"):
        adapter(server, key="wrong-key").fetch_bars("IBM", "1d")


def test_the_key_never_shows_in_errors_or_logs(
    server: FixtureServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = adapter(server)
    server.inject(
        *[Reply(200, fixture("note_per_minute.json"))] * 3,
        *[server_error(503)] * 3,
        Reply(200, fixture("error_invalid_call.json")),
        Reply(200, {"Error Message": f"Invalid API call for apikey={KEY}"}),
    )
    errors: list[ProviderError] = []
    for _ in range(4):
        with pytest.raises(ProviderError) as caught:
            provider.fetch_bars("IBM", "1d", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-05"))
        errors.append(caught.value)

    assert [type(e).__name__ for e in errors] == ["RateLimited", "Unavailable", "NotSupported", "AuthError"]
    assert all(KEY not in str(e) and KEY not in repr(e.args) for e in errors)
    assert "apikey=***" in str(errors[1])
    assert KEY not in caplog.text
    assert all(r.query["apikey"] == KEY for r in server.requests)  # it was sent, only to the server
