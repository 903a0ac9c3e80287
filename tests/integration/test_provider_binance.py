"""The Binance adapter against a loopback server that plays ``/api/v3/klines`` from ground truth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from providers.base import BadResponse, NotSupported
from providers.binance import FIRST_DAY, BinanceProvider
from tests.fixture_server import FixtureServer, Reply, Request, rate_limited
from tests.provider_fakes import Klines, answer, fast_policy, load_fixture, ms, synthetic

POLICY = fast_policy()
ORIGIN = pd.Timestamp("2024-03-01", tz="UTC")
NOW = pd.Timestamp("2024-06-01 12:00", tz="UTC")


def fixture(name: str) -> Any:
    """A literal Binance fixture file, parsed."""
    return load_fixture("binance", name)


def truth(timeframe: str, end: str, origin: pd.Timestamp = ORIGIN) -> pd.DataFrame:
    """Ground-truth bars of BTCUSDT: the seeded synthetic market, 24/7."""
    return synthetic(timeframe, end, origin, seed=11, symbol="BTC")


@pytest.fixture
def serve(
    server: FixtureServer, adapters: Callable[..., Any], sleeps: list[float]
) -> Callable[[Callable[[Request], Reply]], tuple[FixtureServer, BinanceProvider]]:
    """Let the loopback server play ``route`` and build the adapter against it through the factory."""
    return lambda route: (
        server.reset(route),
        adapters(BinanceProvider, server.url, POLICY, sleep=sleeps.append, now=NOW),
    )


def test_2500_minute_bars_come_in_three_pages_with_exact_ground_truth(serve: Callable[..., Any]) -> None:
    minutes = truth("1m", "2024-03-03")
    server, adapter = serve(Klines({"1m": minutes}))
    start = pd.Timestamp("2024-03-01 00:10", tz="UTC")
    end = start + pd.Timedelta(minutes=2500)

    bars = adapter.fetch_bars("BTCUSDT", "1m", start, end)

    expected = minutes[(minutes.index >= start) & (minutes.index < end)]
    assert len(bars) == 2500
    pd.testing.assert_frame_equal(bars, expected, check_freq=False)
    sent = [r.query for r in server.requests]
    assert [int(q["startTime"]) for q in sent] == [
        ms(start + pd.Timedelta(minutes=k)) for k in (0, 1000, 2000)
    ]
    assert {(q["symbol"], q["interval"], q["endTime"], q["limit"]) for q in sent} == {
        ("BTCUSDT", "1m", str(ms(end) - 1), "1000")
    }


def test_a_range_of_exactly_full_pages_stops_without_an_extra_request(serve: Callable[..., Any]) -> None:
    minutes = truth("1m", "2024-03-03")
    server, adapter = serve(Klines({"1m": minutes}))
    start = pd.Timestamp("2024-03-01", tz="UTC")
    bars = adapter.fetch_bars("BTCUSDT", "1m", start, start + pd.Timedelta(minutes=2000))
    assert len(bars) == 2000 and bars.index.is_unique
    assert len(server.requests) == 2


def test_hour_and_day_bars_are_clipped_to_the_range(serve: Callable[..., Any]) -> None:
    hours, days = truth("1h", "2024-05-01"), truth("1d", "2024-05-01")
    _, adapter = serve(Klines({"1h": hours, "1d": days}))
    start, end = pd.Timestamp("2024-03-05 12:30", tz="UTC"), pd.Timestamp("2024-04-20 06:00", tz="UTC")

    got_days = adapter.fetch_bars("BTCUSDT", "1d", start, end)
    got_hours = adapter.fetch_bars("BTCUSDT", "1h", start, end)

    # day bars open at 00:00 UTC: the 5 March bar opened before start, the 20 April one inside the range
    assert got_days.index[0] == pd.Timestamp("2024-03-06", tz="UTC")
    assert got_days.index[-1] == pd.Timestamp("2024-04-20", tz="UTC")
    pd.testing.assert_frame_equal(got_days, days.loc["2024-03-06":"2024-04-20"], check_freq=False)
    assert got_hours.index[0] == pd.Timestamp("2024-03-05 13:00", tz="UTC")
    assert got_hours.index[-1] == pd.Timestamp("2024-04-20 05:00", tz="UTC")
    assert len(got_hours) == (got_hours.index[-1] - got_hours.index[0]) / pd.Timedelta("1h") + 1


def test_open_range_starts_at_binances_first_day_and_ends_at_the_last_closed_bar(
    serve: Callable[..., Any],
) -> None:
    days = truth("1d", "2017-12-31", origin=FIRST_DAY)
    server, adapter = serve(Klines({"1d": days}))
    adapter.now = lambda: pd.Timestamp("2017-12-01 12:00", tz="UTC")

    bars = adapter.fetch_bars("BTCUSDT", "1d")

    assert int(server.requests[0].query["startTime"]) == ms(pd.Timestamp("2017-08-17", tz="UTC"))
    assert bars.index[0] == pd.Timestamp("2017-08-17", tz="UTC")
    assert bars.index[-1] == pd.Timestamp("2017-11-30", tz="UTC")  # 1 December has not closed yet
    pd.testing.assert_frame_equal(bars, days.loc[:"2017-11-30"], check_freq=False)


def test_rows_out_of_order_are_sorted_and_paging_still_follows_the_last_open_time(
    serve: Callable[..., Any],
) -> None:
    minutes = truth("1m", "2024-03-03")
    server, adapter = serve(Klines({"1m": minutes}, shuffle=True))
    start = pd.Timestamp("2024-03-01", tz="UTC")
    bars = adapter.fetch_bars("BTCUSDT", "1m", start, start + pd.Timedelta(minutes=1500))
    pd.testing.assert_frame_equal(bars, minutes.iloc[:1500], check_freq=False)
    assert len(server.requests) == 2


def test_unknown_symbol_is_not_supported_and_not_retried(serve: Callable[..., Any]) -> None:
    server, adapter = serve(Klines({"1m": truth("1m", "2024-03-02")}))
    with pytest.raises(NotSupported, match=r"binance: .*'DOGEXYZ'.*Invalid symbol"):
        adapter.fetch_bars("DOGEXYZ", "1m", ORIGIN, ORIGIN + pd.Timedelta(hours=1))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("name", "error", "text"),
    [
        ("error_invalid_symbol.json", NotSupported, "Invalid symbol"),
        ("error_illegal_characters.json", BadResponse, "-1100"),
    ],
)
def test_error_bodies_with_status_200_are_typed(
    serve: Callable[..., Any], name: str, error: type[Exception], text: str
) -> None:
    _, adapter = serve(answer(fixture(name)))
    with pytest.raises(error, match=text):
        adapter.fetch_bars("BTCUSDT", "1h", ORIGIN, ORIGIN + pd.Timedelta(hours=3))


def test_the_documented_kline_layout_becomes_canonical_bars(serve: Callable[..., Any]) -> None:
    _, adapter = serve(answer(fixture("klines_btcusdt_1h.json")))
    bars = adapter.fetch_bars(
        "BTCUSDT", "1h", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02")
    )
    assert list(bars.index) == list(pd.date_range("2024-01-01", periods=3, freq="1h", tz="UTC"))
    assert bars.iloc[0].to_dict() == {
        "open": 42283.58,
        "high": 42554.57,
        "low": 42261.02,
        "close": 42475.23,
        "volume": 1271.68108,
    }
    assert bars.dtypes.unique().tolist() == ["float64"]


def test_conflicting_duplicate_rows_are_a_bad_response(serve: Callable[..., Any]) -> None:
    _, adapter = serve(answer(fixture("klines_conflicting_duplicate.json")))
    with pytest.raises(BadResponse, match="two different bars for 2024-01-01T00:00:00"):
        adapter.fetch_bars("BTCUSDT", "1h", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"))


def test_a_server_that_ignores_start_time_cannot_make_the_adapter_loop(serve: Callable[..., Any]) -> None:
    _, adapter = serve(Klines({"1m": truth("1m", "2024-03-03")}, ignore_start=True))
    with pytest.raises(BadResponse, match="did not move forward"):
        adapter.fetch_bars("BTCUSDT", "1m", ORIGIN, ORIGIN + pd.Timedelta(minutes=2500))


def test_rate_limits_with_retry_after_are_waited_out(serve: Callable[..., Any], sleeps: list[float]) -> None:
    minutes = truth("1m", "2024-03-03")
    server, adapter = serve(Klines({"1m": minutes}))
    server.inject(
        rate_limited(2.0), Reply(418, {"code": -1003, "msg": "IP banned"}, headers={"Retry-After": "3"})
    )
    bars = adapter.fetch_bars("BTCUSDT", "1m", ORIGIN, ORIGIN + pd.Timedelta(minutes=1200))
    pd.testing.assert_frame_equal(bars, minutes.iloc[:1200], check_freq=False)
    assert sleeps == [2.0, 3.0]
    assert len(server.requests) == 4  # two refused, then two pages
