"""The Yahoo adapter against a loopback server that plays the v8 chart API from ground truth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from providers.base import BadResponse, NotSupported
from providers.yahoo import YahooProvider
from storage import CorporateAction
from tests.fixture_server import FixtureServer, Reply, Request
from tests.provider_fakes import answer, chart_route, fast_policy, load_fixture, synthetic, yahoo_day_stamps

POLICY = fast_policy()
NOW = pd.Timestamp("2024-06-20 12:00", tz="UTC")  # a Thursday; NYSE closed on the 19th (Juneteenth)


def fixture(name: str) -> Any:
    """A literal Yahoo fixture file, parsed."""
    return load_fixture("yahoo", name)


def truth(timeframe: str, origin: str, end: str = "2024-06-21") -> pd.DataFrame:
    """Ground-truth bars of a NYSE-listed symbol (the seeded synthetic market on XNYS)."""
    return synthetic(timeframe, end, origin, seed=5, calendar="XNYS")


@pytest.fixture
def serve(
    server: FixtureServer, adapters: Callable[..., Any]
) -> Callable[[Callable[[Request], Reply]], tuple[FixtureServer, YahooProvider]]:
    """Let the loopback server play ``route`` and build the adapter against it through the factory."""
    return lambda route: (server.reset(route), adapters(YahooProvider, server.url, POLICY, now=NOW))


def literal(name: str) -> Callable[[Request], Reply]:
    """A route that answers every request with the literal fixture ``name``."""
    return answer(fixture(name))


def test_minute_bars_page_in_windows_of_at_most_seven_days(serve: Callable[..., Any]) -> None:
    minutes = truth("1m", "2024-05-28")
    server, adapter = serve(chart_route({("AAPL", "1m"): minutes}))
    start, end = pd.Timestamp("2024-06-03", tz="UTC"), pd.Timestamp("2024-06-18", tz="UTC")

    bars = adapter.fetch_bars("AAPL", "1m", start, end)

    pd.testing.assert_frame_equal(bars, minutes.loc[start : end - pd.Timedelta("1ns")], check_freq=False)
    windows = [(int(r.query["period1"]), int(r.query["period2"])) for r in server.requests]
    edges = [int(pd.Timestamp(d, tz="UTC").timestamp()) for d in ("2024-06-03", "2024-06-10", "2024-06-17")]
    assert windows == [(edges[0], edges[1]), (edges[1], edges[2]), (edges[2], int(end.timestamp()))]
    first = server.requests[0]
    assert first.path == "/v8/finance/chart/AAPL"
    assert (first.query["interval"], first.query["includePrePost"], first.query["events"]) == (
        "1m",
        "false",
        "div,splits",
    )
    assert first.headers["User-Agent"].startswith("Mozilla/5.0")


def test_open_range_reaches_back_29_days_and_drops_the_live_row_and_the_forming_bar(
    serve: Callable[..., Any],
) -> None:
    minutes = truth("1m", "2024-05-17")
    now = pd.Timestamp("2024-06-18 15:00:30", tz="UTC")  # mid-session
    # the live quote row is stamped with the last trade's time (a thin market: two minutes ago)
    live = minutes.loc[["2024-06-18 15:00"]].set_axis(pd.DatetimeIndex([now - pd.Timedelta(seconds=123)]))
    server, adapter = serve(chart_route({("AAPL", "1m"): minutes}, extra=live))
    adapter.now = lambda: now

    bars = adapter.fetch_bars("AAPL", "1m")

    assert int(server.requests[0].query["period1"]) == int(
        pd.Timestamp("2024-05-20 15:01", tz="UTC").timestamp()
    )
    assert len(server.requests) == 5  # 29 days in windows of 7
    expected = minutes.loc["2024-05-20 15:01":"2024-06-18 14:59"]
    pd.testing.assert_frame_equal(bars, expected, check_freq=False)


def test_minute_bars_older_than_yahoo_keeps_are_refused_without_a_request(serve: Callable[..., Any]) -> None:
    server, adapter = serve(chart_route({}))
    with pytest.raises(NotSupported, match=r"1m bars exist only for the last 30 days"):
        adapter.fetch_bars("AAPL", "1m", NOW - pd.Timedelta(days=30), NOW - pd.Timedelta(days=25))
    with pytest.raises(NotSupported, match=r"1h bars exist only for the last 730 days"):
        adapter.fetch_bars("AAPL", "1h", NOW - pd.Timedelta(days=800), NOW)
    assert server.requests == []


def test_hour_bars_of_an_index_keep_their_half_hour_stamps_and_null_volume_is_zero(
    serve: Callable[..., Any],
) -> None:
    hours = truth("1h", "2024-01-01")
    server, adapter = serve(chart_route({("^GSPC", "60m"): hours}, null_volume=True))
    start, end = pd.Timestamp("2024-02-01", tz="UTC"), pd.Timestamp("2024-05-15", tz="UTC")

    bars = adapter.fetch_bars("^GSPC", "1h", start, end)

    expected = hours.loc[start : end - pd.Timedelta("1ns")].assign(volume=0.0)
    pd.testing.assert_frame_equal(bars, expected, check_freq=False)
    assert bars.index[0] == pd.Timestamp("2024-02-01 14:30", tz="UTC")  # 09:30 EST
    assert pd.Timestamp("2024-04-01 13:30", tz="UTC") in bars.index  # 09:30 EDT
    assert [r.path for r in server.requests] == ["/v8/finance/chart/%5EGSPC"] * 2  # windows of 60 days
    assert {r.query["interval"] for r in server.requests} == {"60m"}


def test_day_bars_move_from_the_session_open_to_the_session_date_and_are_clipped(
    serve: Callable[..., Any],
) -> None:
    days = truth("1d", "2023-11-01")
    served = days.set_axis(yahoo_day_stamps(pd.DatetimeIndex(days.index)))
    server, adapter = serve(chart_route({("AAPL", "1d"): served}, shuffle=True))
    start, end = pd.Timestamp("2024-01-10 12:00", tz="UTC"), pd.Timestamp("2024-04-05", tz="UTC")

    bars = adapter.fetch_bars("AAPL", "1d", start, end)

    pd.testing.assert_frame_equal(bars, days.loc["2024-01-11":"2024-04-04"], check_freq=False)
    assert len(server.requests) == 1
    assert int(server.requests[0].query["period1"]) == int((start - pd.Timedelta(days=1)).timestamp())


def test_the_documented_chart_shape_drops_empty_rows_and_zeroes_missing_volume(
    serve: Callable[..., Any],
) -> None:
    _, adapter = serve(literal("chart_gspc_1d.json"))
    bars = adapter.fetch_bars("^GSPC", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-08"))
    assert list(bars.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03", "2024-01-05"]
    assert bars.loc["2024-01-03", "volume"] == 0.0
    assert bars.loc["2024-01-02"].to_dict() == {
        "open": 4745.2001953125,
        "high": 4754.330078125,
        "low": 4722.669921875,
        "close": 4742.830078125,
        "volume": 3743050000.0,
    }


@pytest.mark.parametrize("zone_field", ["exchangeTimezoneName", "gmtoffset"])
def test_day_stamps_are_dated_in_the_exchange_time_zone(serve: Callable[..., Any], zone_field: str) -> None:
    body = fixture("chart_bhp_ax_1d.json")
    meta = body["chart"]["result"][0]["meta"]
    meta.pop("exchangeTimezoneName" if zone_field == "gmtoffset" else "gmtoffset")
    _, adapter = serve(answer(body))
    # Sydney opens at 10:00 AEDT, 23:00 UTC the day before
    bars = adapter.fetch_bars("BHP.AX", "1d", pd.Timestamp("2024-01-15"), pd.Timestamp("2024-01-18"))
    assert list(bars.index.strftime("%Y-%m-%d")) == ["2024-01-15", "2024-01-16", "2024-01-17"]
    assert bars["close"].tolist() == [49.78, 49.27, 48.5]


def test_unknown_symbol_is_not_supported_and_not_retried(serve: Callable[..., Any]) -> None:
    server, adapter = serve(chart_route({}))
    with pytest.raises(NotSupported, match=r"yahoo: .*'NOPE'.*may be delisted"):
        adapter.fetch_bars("NOPE", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    ("name", "status", "error", "text"),
    [
        ("error_not_found.json", 200, NotSupported, "may be delisted"),
        ("error_range_unprocessable.json", 422, NotSupported, "within the last 30 days"),
        ("error_range_unprocessable.json", 200, NotSupported, "within the last 30 days"),
        ("error_bad_request.json", 400, BadResponse, "interval=7m is not supported"),
        ("error_bad_request.json", 200, BadResponse, "interval=7m is not supported"),
    ],
)
def test_chart_errors_are_typed_whatever_the_status(
    serve: Callable[..., Any], name: str, status: int, error: type[Exception], text: str
) -> None:
    body = fixture(name)
    server, adapter = serve(answer(body, status))
    with pytest.raises(error, match=text) as caught:
        adapter.fetch_bars("AAPL", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    assert str(caught.value).startswith("yahoo: ")
    assert len(server.requests) == 1


def test_conflicting_duplicate_rows_are_a_bad_response(serve: Callable[..., Any]) -> None:
    body = fixture("chart_bhp_ax_1d.json")
    result = body["chart"]["result"][0]
    result["timestamp"].append(result["timestamp"][0])
    for name, values in result["indicators"]["quote"][0].items():
        values.append(values[0] + (1.0 if name == "close" else 0.0))
    _, adapter = serve(answer(body))
    with pytest.raises(BadResponse, match="two different bars"):
        adapter.fetch_bars("BHP.AX", "1d", pd.Timestamp("2024-01-15"), pd.Timestamp("2024-01-18"))


def test_a_chart_of_another_granularity_is_a_bad_response(serve: Callable[..., Any]) -> None:
    body = fixture("chart_gspc_1d.json")  # a day chart answered to a minute request
    _, adapter = serve(answer(body))
    with pytest.raises(BadResponse, match="asked '\\^GSPC' for 1m bars, got '1d'"):
        adapter.fetch_bars("^GSPC", "1m", NOW - pd.Timedelta(days=2), NOW)


def test_a_window_without_trades_is_empty(serve: Callable[..., Any]) -> None:
    days = truth("1d", "2024-03-01")
    served = days.set_axis(yahoo_day_stamps(pd.DatetimeIndex(days.index)))
    _, adapter = serve(chart_route({("AAPL", "1d"): served}))
    # Good Friday and a weekend: no session, and the sessions a day either side are clipped away
    bars = adapter.fetch_bars("AAPL", "1d", pd.Timestamp("2024-03-29"), pd.Timestamp("2024-04-01"))
    assert bars.empty and list(bars.columns) == ["open", "high", "low", "close", "volume"]


# -- splits (events.splits of the day chart) -------------------------------------------------------


def test_splits_come_from_the_day_chart_dated_by_session(serve: Callable[..., Any]) -> None:
    days = truth("1d", "2023-11-01")
    served = days.set_axis(yahoo_day_stamps(pd.DatetimeIndex(days.index)))
    splits = {"AAPL": [("2023-11-15", 2, 1), ("2024-02-12", 1, 10), ("2024-05-06", 3, 2)]}
    server, adapter = serve(chart_route({("AAPL", "1d"): served}, splits=splits))

    found = adapter.fetch_splits("AAPL", pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-06-01"))

    assert found == [
        CorporateAction("AAPL", pd.Timestamp("2024-02-12", tz="UTC"), "split", 0.1, "yahoo"),
        CorporateAction("AAPL", pd.Timestamp("2024-05-06", tz="UTC"), "split", 1.5, "yahoo"),
    ]
    (request,) = server.requests
    assert (request.path, request.query["interval"]) == ("/v8/finance/chart/AAPL", "1d")
    assert "splits" in request.query["events"].split(",")
    # a day wider on each side, as for day bars: a split dated by its session's open is caught
    assert int(request.query["period1"]) == int(pd.Timestamp("2023-12-31", tz="UTC").timestamp())


def test_the_documented_split_shape_gives_the_ex_date_and_ratio(serve: Callable[..., Any]) -> None:
    body = fixture("chart_gspc_1d.json")
    result = body["chart"]["result"][0]
    result["meta"]["symbol"] = "AAPL"
    result["events"] = {
        "splits": {
            "1598880600": {"date": 1598880600, "numerator": 4, "denominator": 1, "splitRatio": "4:1"},
        }
    }
    _, adapter = serve(answer(body))
    found = adapter.fetch_splits("AAPL", pd.Timestamp("2020-08-01"), pd.Timestamp("2020-09-30"))
    # 13:30 UTC is the 09:30 open in New York: the ex-date is that session, at 00:00 UTC
    assert found == [CorporateAction("AAPL", pd.Timestamp("2020-08-31", tz="UTC"), "split", 4.0, "yahoo")]


def test_a_chart_without_split_events_has_no_splits(serve: Callable[..., Any]) -> None:
    _, adapter = serve(literal("chart_gspc_1d.json"))
    assert adapter.fetch_splits("^GSPC", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-08")) == []


@pytest.mark.parametrize(
    ("numerator", "denominator"), [(0, 1), (2, 0), (-2, 1), (None, 1), ("two", 1), (2, None)]
)
def test_a_split_without_a_valid_ratio_is_a_bad_response(
    serve: Callable[..., Any], numerator: Any, denominator: Any
) -> None:
    _, adapter = serve(chart_route({}, splits={"AAPL": [("2024-02-12", numerator, denominator)]}))
    with pytest.raises(BadResponse, match=r"yahoo: the split of 'AAPL' on 2024-02-12 has no valid ratio"):
        adapter.fetch_splits("AAPL", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-01"))


def test_splits_of_an_unknown_symbol_are_not_supported(serve: Callable[..., Any]) -> None:
    server, adapter = serve(chart_route({}))
    with pytest.raises(NotSupported, match="may be delisted"):
        adapter.fetch_splits("NOPE", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-02-01"))
    assert len(server.requests) == 1
