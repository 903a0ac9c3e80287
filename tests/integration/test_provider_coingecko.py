"""The CoinGecko adapter against a loopback server playing ``market_chart/range`` with its automatic
granularity, from handwritten points whose OHLC are known."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from providers.base import BadResponse, NotSupported, RateLimited
from providers.coingecko import CoinGeckoProvider
from tests.fixture_server import FixtureServer, Reply, Request
from tests.provider_fakes import build_at, canonical, fast_policy, load_fixture

POLICY = fast_policy(attempts=2, max_retry_after_s=60.0)
NOW_5M = pd.Timestamp("2024-03-01 03:02", tz="UTC")  # the 5-minute fixture ends at 03:01:10
NOW_LATER = pd.Timestamp("2024-06-01 12:00", tz="UTC")
HOUR_MS = 3_600_000


def fixture(name: str) -> Any:
    """A literal CoinGecko fixture file, parsed."""
    return load_fixture("coingecko", name)


def in_range(body: dict[str, Any], request: Request) -> dict[str, Any]:
    """``body``'s points with ``from <= t <= to`` (seconds), as CoinGecko answers a range."""
    lo, hi = int(request.query["from"]) * 1000, int(request.query["to"]) * 1000
    return {k: [p for p in v if lo <= p[0] <= hi] for k, v in body.items()}


def fixture_route(name: str) -> Callable[[Request], Reply]:
    """Serve the points of fixture ``name`` for ``bitcoin``; other ids are not found."""

    def route(request: Request) -> Reply:
        if request.path != "/coins/bitcoin/market_chart/range":
            return Reply(404, fixture("error_coin_not_found.json"))
        return Reply(200, in_range(fixture(name), request))

    return route


def hourly_route(request: Request) -> Reply:
    """Any range of bitcoin as hourly points at hh:00:30 priced ``100 + hour of day``."""
    lo, hi = int(request.query["from"]) * 1000, int(request.query["to"]) * 1000
    first = -(-lo // HOUR_MS) * HOUR_MS
    times = [t + 30_000 for t in range(first, hi, HOUR_MS) if t + 30_000 <= hi]
    prices = [[t, 100.0 + (t // HOUR_MS) % 24] for t in times]
    return Reply(200, {"prices": prices, "market_caps": prices, "total_volumes": [[t, 5e8] for t in times]})


@pytest.fixture
def serve(shared_server: FixtureServer) -> Callable[[Callable[[Request], Reply]], FixtureServer]:
    """Point the module's loopback server at a route, with no requests recorded and no faults queued."""
    return shared_server.reset


def adapter(
    server: FixtureServer, now: pd.Timestamp, key: str | None = None, sleeps: list[float] | None = None
) -> CoinGeckoProvider:
    """The adapter as the factory builds it, pointed at ``server``, with ``now`` as the time."""
    sleep = sleeps.append if sleeps is not None else None
    return build_at(CoinGeckoProvider, server.url, POLICY, sleep=sleep, now=now, coingecko_api_key=key)


def test_hour_bars_from_five_minute_points_of_the_last_day(serve: Any) -> None:
    server = serve(fixture_route("range_bitcoin_5m.json"))
    got = adapter(server, NOW_5M).fetch_bars("bitcoin", "1h", pd.Timestamp("2024-03-01"))

    # open = first point, high/low = extremes, close = last point of each hour; no interval volume;
    # the 03:00 bar is still in progress and is left out
    expected = canonical(
        [
            ("2024-03-01 00:00", 100.0, 104.0, 98.0, 104.0, 0),
            ("2024-03-01 01:00", 104.2, 107.2, 103.9, 105.9, 0),
            ("2024-03-01 02:00", 105.7, 105.7, 101.2, 103.4, 0),
        ]
    )
    pd.testing.assert_frame_equal(got, expected)
    (request,) = server.requests
    assert request.query["vs_currency"] == "usd"
    assert int(request.query["from"]) == int(pd.Timestamp("2024-03-01", tz="UTC").timestamp())
    assert (
        int(request.query["to"]) - int(request.query["from"]) <= 86_400
    )  # 1 day ending now: 5-minute points


def test_day_bars_from_hourly_points_with_the_rolling_volume_at_the_end_of_the_day(serve: Any) -> None:
    server = serve(fixture_route("range_bitcoin_hourly.json"))
    got = adapter(server, NOW_LATER).fetch_bars(
        "bitcoin", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-04")
    )

    # the points of 2 January come in reverse order and one point is repeated: both are tidied;
    # 3 January has only 8 of its 24 hourly points and is left out rather than made up
    expected = canonical(
        [
            ("2024-01-01", 42000.0, 42500.0, 41800.0, 42230.0, 1.023e9),
            ("2024-01-02", 43000.0, 43600.0, 42100.0, 42885.0, 2.023e9),
        ]
    )
    pd.testing.assert_frame_equal(got, expected)


def test_long_day_ranges_are_paged_in_windows_that_keep_hourly_points(serve: Any) -> None:
    server = serve(hourly_route)
    got = adapter(server, NOW_LATER).fetch_bars(
        "bitcoin", "1d", pd.Timestamp("2023-01-01"), pd.Timestamp("2023-05-01")
    )

    days = pd.date_range("2023-01-01", "2023-04-30", freq="D", tz="UTC", name="ts")
    expected = pd.DataFrame(
        {"open": 100.0, "high": 123.0, "low": 100.0, "close": 123.0, "volume": 5e8}, index=days.as_unit("ns")
    )
    pd.testing.assert_frame_equal(got, expected, check_freq=False)
    spans = [int(r.query["to"]) - int(r.query["from"]) for r in server.requests]
    assert len(spans) == 2 and all(span < 90 * 86_400 for span in spans)


def test_points_coarser_than_the_bar_need_are_a_bad_response(serve: Any) -> None:
    server = serve(hourly_route)  # hourly points where 5-minute points were due
    with pytest.raises(BadResponse, match="too coarse for 1h bars"):
        adapter(server, NOW_LATER).fetch_bars("bitcoin", "1h", NOW_LATER - pd.Timedelta(hours=6))

    daily = {
        "prices": [
            [int(t.value // 1_000_000), 40000.0 + i]
            for i, t in enumerate(pd.date_range("2024-01-01", periods=20, tz="UTC"))
        ],
        "market_caps": [],
        "total_volumes": [],
    }
    server.inject(Reply(200, daily))  # daily points where hourly points were due
    with pytest.raises(BadResponse, match="too coarse for 1d bars"):
        adapter(server, NOW_LATER).fetch_bars(
            "bitcoin", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-21")
        )


def test_minute_bars_and_old_hour_bars_are_not_supported_without_a_request(serve: Any) -> None:
    server = serve(hourly_route)
    provider = adapter(server, NOW_LATER)
    with pytest.raises(NotSupported, match="1m"):
        provider.fetch_bars("bitcoin", "1m", pd.Timestamp("2024-05-01"))
    with pytest.raises(NotSupported, match="last 24 hours"):
        provider.fetch_bars("bitcoin", "1h", NOW_LATER - pd.Timedelta(days=3))
    assert server.requests == []


def test_error_bodies_become_typed_errors(serve: Any) -> None:
    server = serve(fixture_route("range_bitcoin_hourly.json"))
    sleeps: list[float] = []
    provider = adapter(server, NOW_LATER, sleeps=sleeps)
    window = (pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-03"))

    with pytest.raises(NotSupported, match="coin not found"):
        provider.fetch_bars("no-such-coin", "1d", *window)

    server.inject(Reply(200, fixture("error_rate_limited.json")))  # a 200 whose body is a 429
    assert len(provider.fetch_bars("bitcoin", "1d", *window)) == 2  # waited, retried, then data
    assert sleeps == [60.0]

    server.inject(*[Reply(429, fixture("error_rate_limited.json"))] * POLICY.retry.attempts)
    with pytest.raises(RateLimited):
        provider.fetch_bars("bitcoin", "1d", *window)

    server.inject(Reply(401, fixture("error_beyond_365_days.json")))
    with pytest.raises(NotSupported, match="365 days"):
        provider.fetch_bars("bitcoin", "1d", *window)


def test_the_demo_key_goes_in_a_header_not_the_url(serve: Any) -> None:
    server = serve(fixture_route("range_bitcoin_hourly.json"))
    adapter(server, NOW_LATER, key="CG-demo-secret").fetch_bars(
        "bitcoin", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")
    )
    (request,) = server.requests
    assert request.headers.get("x-cg-demo-api-key") == "CG-demo-secret"
    assert "CG-demo-secret" not in request.raw_query
