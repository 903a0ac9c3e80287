"""The Polygon adapter against a loopback server that plays aggregates v2 (with ``next_url``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
import pytest

from providers.base import AuthError, BadResponse, NotSupported, ProviderError, RateLimited, Unavailable
from providers.polygon import PolygonProvider
from storage import CorporateAction
from tests.fixture_server import FixtureServer, Reply, Request, malformed_json, rate_limited, server_error
from tests.provider_fakes import (
    POLYGON,
    aggs_route,
    answer,
    fast_policy,
    load_fixture,
    midnight_new_york,
    ms,
    splits_route,
    synthetic,
)
from tests.provider_fakes import POLYGON_KEY as KEY

POLICY = fast_policy()
NOW = pd.Timestamp("2024-06-20 12:00", tz="UTC")


def fixture(name: str) -> Any:
    """A literal Polygon fixture file, parsed."""
    return load_fixture("polygon", name)


def truth(timeframe: str, calendar: str, origin: str, end: str = "2024-06-01") -> pd.DataFrame:
    """Ground-truth bars from the seeded synthetic market."""
    return synthetic(timeframe, end, origin, seed=9, calendar=calendar)


@pytest.fixture
def serve(
    server: FixtureServer, adapters: Callable[..., Any], sleeps: list[float]
) -> Callable[..., tuple[FixtureServer, PolygonProvider]]:
    """Let the loopback server play ``route`` and build the adapter (with ``KEY``, its base URL under
    ``path``) against it through the factory."""

    def start(
        route: Callable[[Request], Reply], key: str | None = KEY, path: str = ""
    ) -> tuple[FixtureServer, PolygonProvider]:
        url = server.reset(route).url + path
        built = adapters(PolygonProvider, url, POLICY, sleep=sleeps.append, now=NOW, polygon_api_key=key)
        return server, built

    return start


def test_2500_minute_bars_follow_next_url_back_to_the_configured_server(serve: Callable[..., Any]) -> None:
    minutes = truth("1m", "24/7", "2024-03-01", end="2024-03-03")
    server, adapter = serve(aggs_route({("X:BTCUSD", "minute"): (minutes, "UTC")}))
    start = pd.Timestamp("2024-03-01 00:10", tz="UTC")
    end = start + pd.Timedelta(minutes=2500)

    bars = adapter.fetch_bars("X:BTCUSD", "1m", start, end)

    pd.testing.assert_frame_equal(bars, minutes.loc[start : end - pd.Timedelta("1ns")], check_freq=False)
    first, *rest = server.requests
    assert first.path == f"/v2/aggs/ticker/X:BTCUSD/range/1/minute/{ms(start)}/{ms(end) - 1}"
    assert first.query == {"adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": KEY}
    assert len(rest) == 2 and all(r.path == first.path and set(r.query) == {"cursor", "apiKey"} for r in rest)
    assert all(r.query["apiKey"] == KEY for r in rest)


@pytest.mark.parametrize("next_on", ["real host", "mirror"])
def test_a_mirror_under_a_path_prefix_gets_every_page(
    serve: Callable[..., Any], server: FixtureServer, next_on: str
) -> None:
    hours = truth("1h", "24/7", "2024-03-01", end="2024-04-01")
    next_base = POLYGON if next_on == "real host" else server.url + "/mirror"
    route = aggs_route(
        {("X:ETHUSD", "hour"): (hours, "UTC")}, page_size=200, prefix="/mirror", next_base=next_base
    )
    _, adapter = serve(route, path="/mirror")
    start, end = pd.Timestamp("2024-03-02 10:30", tz="UTC"), pd.Timestamp("2024-03-25 00:00", tz="UTC")

    bars = adapter.fetch_bars("X:ETHUSD", "1h", start, end)

    assert bars.index[0] == pd.Timestamp("2024-03-02 11:00", tz="UTC")  # clipped to the range
    pd.testing.assert_frame_equal(bars, hours.loc["2024-03-02 11:00":"2024-03-24 23:00"], check_freq=False)
    assert {r.path.split("/")[1] for r in server.requests} == {"mirror"} and len(server.requests) == 3


def test_day_aggregates_at_midnight_new_york_become_session_dates(serve: Callable[..., Any]) -> None:
    days = truth("1d", "XNYS", "2023-11-01")
    served = days.set_axis(midnight_new_york(pd.DatetimeIndex(days.index)))
    server, adapter = serve(aggs_route({("AAPL", "day"): (served, "America/New_York")}, shuffle=True))
    start, end = pd.Timestamp("2024-01-10 12:00", tz="UTC"), pd.Timestamp("2024-04-05", tz="UTC")

    bars = adapter.fetch_bars("AAPL", "1d", start, end)

    pd.testing.assert_frame_equal(bars, days.loc["2024-01-11":"2024-04-04"], check_freq=False)  # across DST
    assert server.requests[0].path == "/v2/aggs/ticker/AAPL/range/1/day/2024-01-10/2024-04-04"


def test_crypto_day_aggregates_at_midnight_utc_keep_their_date(serve: Callable[..., Any]) -> None:
    days = truth("1d", "24/7", "2024-01-01")
    _, adapter = serve(aggs_route({("X:BTCUSD", "day"): (days, "UTC")}))
    bars = adapter.fetch_bars("X:BTCUSD", "1d", pd.Timestamp("2024-02-01"), pd.Timestamp("2024-03-01"))
    pd.testing.assert_frame_equal(bars, days.loc["2024-02-01":"2024-02-29"], check_freq=False)


def test_the_documented_shapes_become_canonical_bars(serve: Callable[..., Any]) -> None:
    _, adapter = serve(answer(fixture("aggs_aapl_1d.json")))
    bars = adapter.fetch_bars("AAPL", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-05"))
    assert list(bars.index.strftime("%Y-%m-%d")) == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert bars.iloc[0].to_dict() == {"open": 187.15, "high": 188.44, "low": 183.885, "close": 185.64,
                                      "volume": 82488674.0}  # fmt: skip

    pages = {None: fixture("aggs_btc_1m_page1.json"), "cursor": fixture("aggs_btc_1m_page2.json")}
    server, adapter = serve(
        lambda request: Reply(200, pages["cursor" if "cursor" in request.query else None])
    )
    bars = adapter.fetch_bars("X:BTCUSD", "1m", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-01 00:03"))
    assert bars["close"].tolist() == [42290.01, 42305.5, 42297.25]
    assert server.requests[1].query == {
        "cursor": "bGltaXQ9MiZzb3J0PWFzYyZzdGFydD0xNzA0MDY3MzIwMDAw",
        "apiKey": KEY,
    }


def test_no_results_is_an_empty_frame(serve: Callable[..., Any]) -> None:
    _, adapter = serve(aggs_route({}))
    bars = adapter.fetch_bars("ZZZZ", "1h", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02"))
    assert bars.empty and list(bars.columns) == ["open", "high", "low", "close", "volume"]


def test_without_a_key_nothing_is_sent_and_the_setting_is_named(serve: Callable[..., Any]) -> None:
    server, adapter = serve(aggs_route({}), key=None)
    with pytest.raises(AuthError, match="FKS_POLYGON_API_KEY"):
        adapter.fetch_bars("AAPL", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-05"))
    assert server.requests == []


def echo_key(request: Request) -> Reply:
    """A server that quotes the request URL, key included, in its error message."""
    return Reply(400, {"status": "ERROR", "request_id": "x", "error": f"bad request {request.raw_query}"})


@pytest.mark.parametrize(
    ("replies", "error"),
    [
        ([server_error(500)] * 3, Unavailable),
        ([rate_limited(0.5)] * 3, RateLimited),
        ([malformed_json()], BadResponse),
        ([Reply(401, fixture("error_unknown_key.json"))], AuthError),
        (
            [Reply(200, {"status": "ERROR", "request_id": "x", "error": f"key {KEY} is malformed"})],
            BadResponse,
        ),
        ([], BadResponse),  # echo_key answers
    ],
)
def test_the_key_never_shows_in_an_error(
    serve: Callable[..., Any], replies: list[Reply], error: type[ProviderError]
) -> None:
    server, adapter = serve(echo_key)
    server.inject(*replies)
    with pytest.raises(error) as caught:
        adapter.fetch_bars("AAPL", "1h", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"))
    assert KEY not in str(caught.value) and KEY not in repr(caught.value.args)
    assert all(r.query.get("apiKey") == KEY and KEY not in r.path for r in server.requests)


@pytest.mark.parametrize(
    ("name", "status", "error", "text"),
    [
        ("error_not_authorized.json", 403, NotSupported, "plan"),
        ("error_not_authorized.json", 200, NotSupported, "plan"),
        ("error_unknown_key.json", 401, AuthError, "Unknown API Key"),
        ("error_unknown_key.json", 200, AuthError, "Unknown API Key"),
    ],
)
def test_error_bodies_are_typed_whatever_the_status(
    serve: Callable[..., Any], name: str, status: int, error: type[ProviderError], text: str
) -> None:
    body = fixture(name)
    server, adapter = serve(answer(body, status))
    with pytest.raises(error, match=text) as caught:
        adapter.fetch_bars("AAPL", "1m", pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03"))
    assert str(caught.value).startswith("polygon: ")
    assert len(server.requests) == 1


def test_exceeded_requests_in_a_body_is_a_rate_limit_that_is_waited_out(
    serve: Callable[..., Any], sleeps: list[float]
) -> None:
    days = truth("1d", "24/7", "2024-01-01")
    server, adapter = serve(aggs_route({("X:BTCUSD", "day"): (days, "UTC")}))
    server.inject(Reply(200, fixture("error_exceeded.json")))
    bars = adapter.fetch_bars("X:BTCUSD", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-11"))
    assert len(bars) == 10 and sleeps == [12.0] and len(server.requests) == 2


def test_conflicting_duplicate_rows_are_a_bad_response(serve: Callable[..., Any]) -> None:
    body = fixture("aggs_aapl_1d.json")
    body["results"].append(body["results"][0] | {"c": 190.0})
    _, adapter = serve(answer(body))
    with pytest.raises(BadResponse, match="two different bars for 2024-01-02"):
        adapter.fetch_bars("AAPL", "1d", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-05"))


def test_a_next_url_that_repeats_cannot_make_the_adapter_loop(serve: Callable[..., Any]) -> None:
    body = fixture("aggs_btc_1m_page1.json")
    server, adapter = serve(answer(body))
    with pytest.raises(BadResponse, match=r"next_url .* repeats"):
        adapter.fetch_bars("X:BTCUSD", "1m", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-01 00:03"))
    assert len(server.requests) == 2


# -- splits (reference v3) -----------------------------------------------------------------------


def test_splits_follow_next_url_and_give_new_shares_per_old(serve: Callable[..., Any]) -> None:
    splits = {
        "AAPL": [("2014-06-09", 7, 1), ("2020-08-31", 4, 1), ("2021-03-01", 1, 10), ("2022-01-03", 3, 2)]
    }
    server, adapter = serve(splits_route(splits, page_size=2))

    found = adapter.fetch_splits("AAPL", pd.Timestamp("2015-01-01", tz="UTC"), pd.Timestamp("2022-01-04"))

    assert found == [
        CorporateAction("AAPL", pd.Timestamp("2020-08-31", tz="UTC"), "split", 4.0, "polygon"),
        CorporateAction("AAPL", pd.Timestamp("2021-03-01", tz="UTC"), "split", 0.1, "polygon"),
        CorporateAction("AAPL", pd.Timestamp("2022-01-03", tz="UTC"), "split", 1.5, "polygon"),
    ]
    first, second = server.requests
    assert first.path == "/v3/reference/splits"
    assert first.query == {
        "ticker": "AAPL",
        "execution_date.gte": "2015-01-01",
        "execution_date.lte": "2022-01-03",  # the end is exclusive
        "limit": "1000",
        "apiKey": KEY,
    }
    assert second.path == "/v3/reference/splits" and set(second.query) == {"cursor", "apiKey"}


def test_the_documented_splits_shape(serve: Callable[..., Any]) -> None:
    body = {
        "results": [
            {"execution_date": "2020-08-31", "id": "E36416cce743c3964c5da63e1ef1626c0aece30fb47302eea5a4",
             "split_from": 1, "split_to": 4, "ticker": "AAPL"},
        ],
        "status": "OK",
        "request_id": "6a7e466379af0a71039d60cc78e72282",
    }  # fmt: skip
    _, adapter = serve(answer(body))
    found = adapter.fetch_splits("AAPL", pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01"))
    assert found == [CorporateAction("AAPL", pd.Timestamp("2020-08-31", tz="UTC"), "split", 4.0, "polygon")]


@pytest.mark.parametrize(
    ("record", "text"),
    [
        ({"split_from": 0, "split_to": 4}, "no valid ratio"),
        ({"split_from": 1, "split_to": -4}, "no valid ratio"),
        ({"split_from": 1}, "no valid ratio"),
        ({"split_from": 1, "split_to": 4, "execution_date": "31/08/2020"}, "not YYYY-MM-DD"),
        ({"split_from": 1, "split_to": 4, "ticker": "MSFT"}, "got one of 'MSFT'"),
    ],
)
def test_a_bad_split_is_a_bad_response(serve: Callable[..., Any], record: dict[str, Any], text: str) -> None:
    good = {"execution_date": "2020-08-31", "ticker": "AAPL", "id": "E1"}
    _, adapter = serve(answer({"results": [good | record], "status": "OK", "request_id": "x"}))
    with pytest.raises(BadResponse, match=text) as caught:
        adapter.fetch_splits("AAPL", pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01"))
    assert str(caught.value).startswith("polygon: ")


def test_a_bad_ratio_on_a_later_page_is_a_bad_response(serve: Callable[..., Any]) -> None:
    splits = {"AAPL": [("2020-08-31", 4, 1), ("2021-03-01", 1, 10), ("2022-01-03", 3, 0)]}
    server, adapter = serve(splits_route(splits, page_size=2))
    with pytest.raises(BadResponse, match=r"'AAPL' on 2022-01-03 has no valid ratio"):
        adapter.fetch_splits("AAPL", pd.Timestamp("2020-01-01"), pd.Timestamp("2023-01-01"))
    assert len(server.requests) == 2


def test_splits_need_the_key_and_keep_it_out_of_errors(serve: Callable[..., Any]) -> None:
    server, adapter = serve(splits_route({}), key=None)
    with pytest.raises(AuthError, match="FKS_POLYGON_API_KEY"):
        adapter.fetch_splits("AAPL", pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01"))
    assert server.requests == []
    server, adapter = serve(echo_key)
    with pytest.raises(BadResponse) as caught:
        adapter.fetch_splits("AAPL", pd.Timestamp("2020-01-01"), pd.Timestamp("2021-01-01"))
    assert KEY not in str(caught.value)
