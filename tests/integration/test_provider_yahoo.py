"""The Yahoo adapter against a loopback server that plays the v8 chart API from ground truth."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd
import pytest

from config.providers import ProviderPolicy, RateLimit, RetryPolicy
from config.settings import get_settings
from providers.base import BadResponse, NotSupported
from providers.factory import build_adapter
from providers.synthetic import SyntheticMarket, simulate
from providers.yahoo import YahooProvider
from tests.fixture_server import FixtureServer, Reply, Request

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers" / "yahoo"
POLICY = ProviderPolicy(
    rate=RateLimit(requests=1000, per_seconds=1),
    timeout_s=2.0,
    cache_ttl_s=0.0,
    retry=RetryPolicy(attempts=3, base_s=0.01, max_s=0.05, jitter=0.0),
)
NOW = pd.Timestamp("2024-06-20 12:00", tz="UTC")  # a Thursday; NYSE closed on the 19th (Juneteenth)
NEW_YORK = {"gmtoffset": -14400, "timezone": "EDT", "exchangeTimezoneName": "America/New_York"}


def fixture(name: str) -> Any:
    """A literal fixture file, parsed."""
    return json.loads((FIXTURES / name).read_text())


def truth(timeframe: str, origin: str, end: str = "2024-06-21") -> pd.DataFrame:
    """Ground-truth bars of a NYSE-listed symbol (the seeded synthetic market on XNYS)."""
    market = SyntheticMarket(seed=5, symbols=("X",), calendar="XNYS", origin=pd.Timestamp(origin, tz="UTC"))
    return simulate(market, timeframe, end=end)["X"]


def yahoo_day_stamps(days: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Yahoo's stamps of NYSE day bars: the session's opening time, 09:30 New York."""
    local = days.tz_localize(None) + pd.Timedelta(hours=9, minutes=30)
    return local.tz_localize("America/New_York").tz_convert("UTC")


def chart_body(symbol: str, interval: str, frame: pd.DataFrame, null_volume: bool = False) -> dict[str, Any]:
    """A chart response in Yahoo's documented shape for the rows of ``frame`` (stamps as served)."""
    meta = {"currency": "USD", "symbol": symbol, "exchangeName": "NMS", "instrumentType": "EQUITY",
            **NEW_YORK, "dataGranularity": interval, "range": ""}  # fmt: skip
    result: dict[str, Any] = {"meta": meta, "indicators": {"quote": [{}], "adjclose": [{}]}}
    if len(frame):
        quote = {
            c: [None if math.isnan(v) else float(v) for v in frame[c]]
            for c in ("open", "high", "low", "close")
        }
        quote["volume"] = [None] * len(frame) if null_volume else [float(v) for v in frame["volume"]]
        result["timestamp"] = [int(t) // 10**9 for t in pd.DatetimeIndex(frame.index).asi8]
        result["indicators"] = {"quote": [quote], "adjclose": [{"adjclose": quote["close"]}]}
    return {"chart": {"result": [result], "error": None}}


def chart_route(
    series: dict[tuple[str, str], pd.DataFrame],
    shuffle: bool = False,
    null_volume: bool = False,
    extra: pd.DataFrame | None = None,
) -> Callable[[Request], Reply]:
    """The chart API over ``{(symbol, interval): frame with Yahoo's stamps}``: rows with
    period1 <= stamp < period2; ``extra`` rows (a live quote) are appended to every answer."""

    def route(request: Request) -> Reply:
        prefix = "/v8/finance/chart/"
        symbol = unquote(request.path.removeprefix(prefix))
        q = request.query
        frame = series.get((symbol, q.get("interval", "")))
        if not request.path.startswith(prefix) or frame is None:
            return Reply(404, fixture("error_not_found.json"))
        seconds = pd.DatetimeIndex(frame.index).asi8 // 10**9
        rows = frame[(seconds >= int(q["period1"])) & (seconds < int(q["period2"]))]
        if extra is not None:
            rows = pd.concat([rows, extra])
        return Reply(
            200, chart_body(symbol, q["interval"], rows.iloc[::-1] if shuffle else rows, null_volume)
        )

    return route


@pytest.fixture(scope="module")
def server() -> Iterator[FixtureServer]:
    """One loopback server for the module (each test gives it its own route)."""
    with FixtureServer(lambda request: Reply(500, "<html>no route</html>")) as running:
        yield running


@pytest.fixture
def serve(
    server: FixtureServer, tmp_path: Path
) -> Iterator[Callable[..., tuple[FixtureServer, YahooProvider]]]:
    """Let the server play ``route`` and build the adapter against it through the factory."""
    built: list[YahooProvider] = []

    def start(route: Callable[[Request], Reply]) -> tuple[FixtureServer, YahooProvider]:
        server.route = route
        server.requests.clear()
        server.faults.clear()
        settings = get_settings(data_dir=tmp_path, yahoo_base_url=server.url)
        adapter = build_adapter("yahoo", settings, POLICY, sleep=lambda s: None)
        assert isinstance(adapter, YahooProvider)
        adapter.now = lambda: NOW
        built.append(adapter)
        return server, adapter

    yield start
    for adapter in built:
        adapter.close()


def literal(name: str) -> Callable[[Request], Reply]:
    """A route that answers every request with the literal fixture ``name``."""
    body = fixture(name)
    return lambda request: Reply(200, body)


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
    _, adapter = serve(lambda request: Reply(200, body))
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
    server, adapter = serve(lambda request: Reply(status, body))
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
    _, adapter = serve(lambda request: Reply(200, body))
    with pytest.raises(BadResponse, match="two different bars"):
        adapter.fetch_bars("BHP.AX", "1d", pd.Timestamp("2024-01-15"), pd.Timestamp("2024-01-18"))


def test_a_chart_of_another_granularity_is_a_bad_response(serve: Callable[..., Any]) -> None:
    body = fixture("chart_gspc_1d.json")  # a day chart answered to a minute request
    _, adapter = serve(lambda request: Reply(200, body))
    with pytest.raises(BadResponse, match="asked '\\^GSPC' for 1m bars, got '1d'"):
        adapter.fetch_bars("^GSPC", "1m", NOW - pd.Timedelta(days=2), NOW)


def test_a_window_without_trades_is_empty(serve: Callable[..., Any]) -> None:
    days = truth("1d", "2024-03-01")
    served = days.set_axis(yahoo_day_stamps(pd.DatetimeIndex(days.index)))
    _, adapter = serve(chart_route({("AAPL", "1d"): served}))
    # Good Friday and a weekend: no session, and the sessions a day either side are clipped away
    bars = adapter.fetch_bars("AAPL", "1d", pd.Timestamp("2024-03-29"), pd.Timestamp("2024-04-01"))
    assert bars.empty and list(bars.columns) == ["open", "high", "low", "close", "volume"]
