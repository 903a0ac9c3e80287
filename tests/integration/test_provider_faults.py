"""The provider manager under fire: the proof of issue 7's "bad input and faults".

A real loopback server plays Binance (the primary for BTC-USD) and injects every fault a free
source throws: 429 with Retry-After, 500/503, timeouts, malformed and truncated JSON, HTML pages.
A second server plays Yahoo's chart API from the same ground truth. Through a real
:class:`providers.manager.ProviderManager` on a real SQLite store, ingestion must end with exactly
the ground truth (no missing bar, no duplicate), every request metered, the rate limit kept on
the wire, the breaker opening, half-opening and closing (and seen by a second manager on the same
database), Retry-After honoured, and the API key nowhere it could leak.

The ground truth, the routes in each provider's documented format, fake time and the config
builders come from :mod:`tests.provider_fakes`; the loopback servers (``net``) and the store from
``tests/integration/conftest.py``.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from config.assets import AssetClass, AssetSpec
from config.settings import Settings
from providers.manager import AllProvidersFailed, ProviderManager
from storage import open_store
from storage.provider_usage import load_breakers
from tests.fixture_server import (
    Reply,
    Request,
    cut_json,
    html_page,
    malformed_json,
    rate_limited,
    server_error,
    slow,
    truncated,
)
from tests.provider_fakes import (
    BTC,
    Chart,
    FakeTime,
    Faulty,
    Klines,
    Loopback,
    assert_same_bars,
    fragile,
    make_config,
    opens_ms,
    origin,
    policy,
    settings_for,
    usage,
)
from tests.provider_fakes import random_walk as truth

KEY = "pk_live_S3cr3tPolygonKey_9f8e7d6c5b4a"


class Aggregates:
    """Polygon's aggregates v2 (1 minute) over a ground-truth frame: ``from``/``to`` in ms, both
    inclusive; ``page`` rows per response, then a ``next_url`` with a cursor; the key must come as
    ``apiKey``. ``echo_key_errors`` makes it answer errors that quote the key back (as careless
    upstream proxies do)."""

    def __init__(self, frame: pd.DataFrame, ticker: str = "X:BTCUSD", page: int = 1000) -> None:
        self.ticker = ticker
        self.frame = frame
        self.opens = opens_ms(frame)
        self.page = page
        self.url = ""
        self.echo_key_errors = 0

    def __call__(self, request: Request) -> Reply:
        prefix = f"/v2/aggs/ticker/{self.ticker}/range/1/minute/"
        key = request.query.get("apiKey", "")
        if self.echo_key_errors > 0:
            self.echo_key_errors -= 1
            return Reply(500, f"<html><body>upstream failed for {request.path}?apiKey={key}</body></html>")
        if key != KEY:
            return Reply(401, {"status": "ERROR", "request_id": "x", "error": f"Unknown API Key '{key}'"})
        if not request.path.startswith(prefix):
            return Reply(404, {"status": "NOT_FOUND", "message": "no such route"})
        first, last = (int(p) for p in request.path.removeprefix(prefix).split("/"))
        first = int(request.query.get("cursor", first))
        lo = int(np.searchsorted(self.opens, first, "left"))
        hi = int(np.searchsorted(self.opens, last, "right"))
        stop = min(hi, lo + self.page)
        part = self.frame.iloc[lo:stop]
        results = [
            {"t": int(t), "o": float(r.open), "h": float(r.high), "l": float(r.low), "c": float(r.close),
             "v": float(r.volume), "vw": float(r.close), "n": 10}
            for t, r in zip(self.opens[lo:stop], part.itertuples(), strict=True)
        ]  # fmt: skip
        body: dict[str, Any] = {"ticker": self.ticker, "queryCount": len(results),
                                "resultsCount": len(results), "adjusted": True, "results": results,
                                "status": "OK", "request_id": "r"}  # fmt: skip
        if stop < hi:
            body["next_url"] = f"{self.url}{prefix}{first}/{last}?cursor={int(self.opens[stop])}"
        return Reply(200, body)


# -- faults on the primary: ingestion completes from the fallback, exactly -----------------------


def test_every_fault_ends_in_retry_or_failover_with_exact_ground_truth(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(20)
    expected = truth(start, 6 * 2_500)
    # request n of the primary gets schedule[n]; two faults in a row exhaust a request's 2 attempts
    # (each chunk is 2,500 bars: 3 pages; requests 0-2 are chunk 0's pages plus retries, and so on)
    schedule = {
        1: rate_limited(0.5),  # chunk 0, page 2: 429, retried after Retry-After, then fine
        3: server_error(500),  # chunk 0, page 3: 500 then 503 on the retry: fails over
        4: server_error(503),
        5: slow(1.5),  # chunk 1, page 1: a timeout (client 0.5 s), then fine on the retry
        7: malformed_json(),  # chunk 1, page 2: malformed JSON is not retried: fails over
        8: truncated([[1, "2"]]),  # chunk 2, page 1: a truncated body, then an HTML page: fails over
        9: html_page(),
        12: truncated([[1, "2"]]),  # chunk 3, page 3: truncated, then recovered by the retry
        14: cut_json([[1, "2", "3", "4", "5", "6"]]),  # chunk 4, page 1: JSON cut mid-document with a
        # matching Content-Length (a half-read body): transient, recovered by the retry
    }
    primary = Faulty(Klines(expected), schedule)
    config = make_config(binance=policy(timeout_s=0.5))  # the slow reply's timeout
    clock = FakeTime()
    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        manager = ProviderManager(cfg, store, config=config, sleep=clock.sleep, clock=clock.clock)
        results = []
        for i in range(6):
            lo, hi = start + pd.Timedelta(minutes=2_500 * i), start + pd.Timedelta(minutes=2_500 * (i + 1))
            results.append(manager.fetch(BTC, "1m", lo, hi, verify=False))
        manager.close()
        yahoo_requests = len(yahoo.requests)
        binance_requests = len(binance.requests)

    combined = pd.concat([r.bars for r in results])
    assert_same_bars(combined, expected)  # zero missing, zero duplicated, every value exact
    providers = [r.provider for r in results]
    assert providers == ["yahoo", "yahoo", "yahoo", "binance", "binance", "binance"]
    kinds = [[a.kind for a in r.attempts] for r in results]
    assert kinds[:3] == [["Unavailable"], ["BadResponse"], ["BadResponse"]]
    assert all(not k for k in kinds[3:])
    assert all(a.provider == "binance" for r in results for a in r.attempts)
    assert "503" in results[0].attempts[0].error
    # Retry-After was honoured (on the injected clock: no real waiting)
    assert any(s >= 0.5 for s in clock.sleeps)
    # every request on the wire is metered, failures and 429s included
    metered = usage(store)
    assert metered["binance"]["calls"] == binance_requests == len(primary.served) == 21
    assert metered["binance"]["failures"] == len(schedule)  # every fault was served and counted
    assert metered["binance"]["rate_limited"] == 1
    assert metered["yahoo"]["calls"] == yahoo_requests == 3
    assert metered["yahoo"]["failures"] == 0


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (rate_limited(0.2), "RateLimited"),
        (server_error(500), "Unavailable"),
        (server_error(503), "Unavailable"),
        (slow(1.0), "Unavailable"),
        (truncated([[1, "2"]]), "Unavailable"),
        (cut_json([[1, "2", "3", "4", "5", "6"]]), "Unavailable"),
        (malformed_json(), "BadResponse"),
        (html_page(), "BadResponse"),
        (Reply(200, {"code": -1003, "msg": "Too much request weight used"}), "RateLimited"),
        (Reply(200, [[1, "x", "2", "3", "4", "5"]]), "BadResponse"),
    ],
    ids=[
        "429",
        "500",
        "503",
        "timeout",
        "truncated",
        "cut-json",
        "malformed",
        "html",
        "error-body",
        "bad-number",
    ],
)
def test_a_persistent_fault_fails_over_to_the_fallback(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path, fault: Reply, kind: str
) -> None:
    start = origin(5)
    expected = truth(start, 1_500)
    # page 1 is fine, page 2 fails on every attempt: the partial pages are dropped, not mixed
    primary = Faulty(Klines(expected), {1: fault, 2: fault})
    config = make_config(binance=policy(timeout_s=0.3))
    clock = FakeTime()
    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config, sleep=clock.sleep, clock=clock.clock) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=1_500), verify=False)
    assert result.provider == "yahoo"
    assert [(a.provider, a.kind) for a in result.attempts] == [("binance", kind)]
    assert_same_bars(result.bars, expected)


def test_when_every_provider_fails_the_error_lists_each_one(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    down_b, down_y = (
        Faulty(Klines(truth(origin(2), 10)), down=True),
        Faulty(Chart(truth(origin(2), 10)), down=True),
    )
    config = make_config()
    clock = FakeTime()
    with net.play(binance=down_b, yahoo=down_y) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        manager = ProviderManager(cfg, store, config=config, sleep=clock.sleep, clock=clock.clock)
        with manager, pytest.raises(AllProvidersFailed) as caught:
            manager.fetch(BTC, "1m", origin(2), origin(2) + pd.Timedelta(minutes=10))
    error = caught.value
    assert [a.provider for a in error.attempts] == ["binance", "yahoo"]
    assert "binance: Unavailable" in str(error) and "yahoo: Unavailable" in str(error)
    assert "HTTP 503" in str(error)


def test_an_empty_range_is_an_answer_not_a_failure(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 100)
    config = make_config()
    with net.play(binance=Klines(expected), yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            later = start + pd.Timedelta(days=1)
            result = manager.fetch(BTC, "1m", later, later + pd.Timedelta(hours=1))
            assert len(yahoo.requests) == 0
    assert result.provider == "binance" and result.bars.empty and not result.attempts
    assert result.verification is None  # nothing to verify


# -- the rate limit, on the wire --------------------------------------------------------------------


def test_the_configured_rate_is_never_exceeded_on_the_wire(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    rate, burst = 20.0, 2
    start = origin(20)
    expected = truth(start, 22_000)  # 22 full pages of 1,000 klines
    # two 503s along the way: their retries go through the bucket too
    primary = Faulty(Klines(expected), {5: server_error(503), 11: server_error(503)})
    config = make_config(binance=policy(rate={"requests": rate, "per_seconds": 1, "burst": burst}))
    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:  # real clock, real sleep
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=22_000), verify=False)
        arrivals = sorted(r.at for r in binance.requests)
    assert result.provider == "binance"
    assert_same_bars(result.bars, expected)
    assert len(arrivals) == 24
    for i in range(len(arrivals)):
        for j in range(i + 1, len(arrivals)):
            window = arrivals[j] - arrivals[i]
            assert j - i + 1 <= burst + rate * window + 1, (i, j, window)
    # and the bucket did pace them: 24 requests at 20/s after a burst of 2 take about 1.1 s
    assert arrivals[-1] - arrivals[0] >= (24 - burst - 2) / rate


# -- the circuit breaker --------------------------------------------------------------------------


def test_breaker_opens_skips_half_opens_closes_and_is_shared_through_the_database(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 300)
    primary = Faulty(Klines(expected), down=True)
    config = make_config(binance=fragile(threshold=2, reset_s=30))
    clock = FakeTime()

    def fetch(manager: ProviderManager, minutes: int) -> Any:
        lo = start + pd.Timedelta(minutes=minutes)
        return manager.fetch(BTC, "1m", lo, lo + pd.Timedelta(minutes=60), verify=False)

    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        kw = clock.manager_kwargs(config)
        manager = ProviderManager(cfg, store, **kw)
        for minutes in (0, 60):  # two failures in a row: the threshold
            assert fetch(manager, minutes).provider == "yahoo"
        assert manager.breaker("binance").state == "open"
        seen = len(binance.requests)
        assert seen == 2

        skipped = fetch(manager, 120)  # open: no request reaches the primary
        assert skipped.provider == "yahoo"
        assert [(a.provider, a.kind) for a in skipped.attempts] == [("binance", "CircuitOpen")]
        assert "circuit breaker open" in skipped.attempts[0].error
        assert len(binance.requests) == seen

        # another manager on the same database (another process) starts with the breaker open
        other_engine = open_store(settings.db_url)
        other = ProviderManager(cfg, other_engine, **kw)
        status = {s.name: s for s in other.status()}
        assert status["binance"].state == "open"
        assert status["binance"].consecutive_failures == 2
        assert "HTTP 503" in (status["binance"].last_error or "")
        assert fetch(other, 180).attempts[0].kind == "CircuitOpen"
        assert len(binance.requests) == seen

        clock.sleep(30.0)  # the reset timeout passes
        assert {s.name: s.state for s in other.status()}["binance"] == "half_open"
        primary.down = False
        trial = fetch(manager, 240)  # the one trial call succeeds: closed
        assert trial.provider == "binance" and not trial.attempts
        assert_same_bars(trial.bars, expected.iloc[240:300])
        assert len(binance.requests) == seen + 1
        assert manager.breaker("binance").state == "closed"
        with other_engine.connect() as conn:
            stored = load_breakers(conn)["binance"]
        assert (stored.state, stored.consecutive_failures, stored.opened_at) == ("closed", 0, None)
        assert {s.name: s.state for s in other.status()}["binance"] == "closed"
        other.close()
        other_engine.dispose()
        manager.close()


def test_a_failed_trial_opens_the_breaker_again(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 120)
    primary = Faulty(Klines(expected), down=True)
    config = make_config(binance=fragile(threshold=1, reset_s=10))
    clock = FakeTime()
    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        kw = clock.manager_kwargs(config)
        with ProviderManager(cfg, store, **kw) as manager:
            end = start + pd.Timedelta(minutes=60)
            manager.fetch(BTC, "1m", start, end, verify=False)
            assert manager.breaker("binance").state == "open"
            clock.sleep(10.0)
            assert manager.breaker("binance").state == "half_open"
            result = manager.fetch(BTC, "1m", start, end, verify=False)  # the trial fails
            assert [a.kind for a in result.attempts] == ["Unavailable"]
            assert manager.breaker("binance").state == "open"
            assert len(binance.requests) == 2
            clock.sleep(5.0)  # the timer restarted with the failed trial
            assert manager.fetch(BTC, "1m", start, end, verify=False).attempts[0].kind == "CircuitOpen"
            assert len(binance.requests) == 2


def test_not_supported_fails_over_and_leaves_the_breaker_alone(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 60)
    config = make_config(binance=policy(breaker={"failure_threshold": 1, "reset_timeout_s": 30}))
    other_pair = AssetSpec(
        symbol="ETH-USD",
        asset_class=AssetClass.CRYPTO,
        provider_symbols={"binance": "ETHUSDT", "yahoo": "BTC-USD"},  # Binance answers -1121
    )
    with net.play(binance=Klines(expected), yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config) as manager:
            result = manager.fetch(other_pair, "1m", start, start + pd.Timedelta(minutes=60), verify=False)
            assert result.provider == "yahoo"
            assert [a.kind for a in result.attempts] == ["NotSupported"]
            assert "ETHUSDT" in result.attempts[0].error
            assert manager.breaker("binance").state == "closed"
            assert manager.breaker("binance").consecutive_failures == 0


# -- Retry-After --------------------------------------------------------------------------------


def test_retry_after_is_honoured_before_the_retry(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 500)
    primary = Faulty(Klines(expected), {0: rate_limited(7)})
    config = make_config()
    clock = FakeTime()
    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config, sleep=clock.sleep, clock=clock.clock) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=500), verify=False)
        assert len(yahoo.requests) == 0
    assert result.provider == "binance" and not result.attempts
    assert_same_bars(result.bars, expected)
    assert max(clock.sleeps) >= 7.0  # waited at least what the server asked, on the injected clock
    assert len(binance.requests) == 2
    metered = usage(store)["binance"]
    assert (metered["calls"], metered["failures"], metered["rate_limited"]) == (2, 1, 1)


def test_a_retry_after_beyond_the_cap_fails_over_instead_of_waiting(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 30)
    primary = Faulty(Klines(expected), {0: rate_limited(3_600)})
    config = make_config(binance=policy(retry={"attempts": 3, "max_retry_after_s": 60}))
    clock = FakeTime()
    with net.play(binance=primary, yahoo=Chart(expected)) as (binance, yahoo):
        cfg = settings_for(settings, tmp_path, config, binance=binance.url, yahoo=yahoo.url)
        with ProviderManager(cfg, store, config=config, sleep=clock.sleep, clock=clock.clock) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=30), verify=False)
        assert len(binance.requests) == 1
    assert result.provider == "yahoo"
    assert [a.kind for a in result.attempts] == ["RateLimited"]
    assert not clock.sleeps or max(clock.sleeps) < 60


# -- secrets ------------------------------------------------------------------------------------


def _database_text(db_url: str) -> str:
    """Every row of every table of the SQLite store, as text."""
    path = db_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(row) for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))


def test_the_api_key_never_leaks(
    net: Loopback,
    settings: Settings,
    store: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    start = origin(3)
    expected = truth(start, 1_500)
    aggs = Aggregates(expected, page=1_000)
    polygon_route = Faulty(aggs)
    config = make_config(
        crypto=("polygon", "binance"),
        polygon=policy(breaker={"failure_threshold": 2, "reset_timeout_s": 30}),
    )
    clock = FakeTime()
    errors: list[str] = []
    dead_route = Faulty(Klines(expected), down=True)
    with net.play(polygon=polygon_route, binance=Klines(expected), dead=dead_route) as (
        polygon,
        binance,
        dead,
    ):
        aggs.url = polygon.url
        base = settings_for(settings, tmp_path, config, binance=binance.url, polygon=polygon.url)
        cfg = base.model_copy(update={"polygon_api_key": SecretStr(KEY)})
        kw = clock.manager_kwargs(config)
        with ProviderManager(cfg, store, **kw) as manager:
            end = start + pd.Timedelta(minutes=1_500)
            # 1. polygon (primary) pages with the key, then upstream errors quote the key back
            good = manager.fetch(BTC, "1m", start, end)
            assert good.provider == "polygon"
            assert_same_bars(good.bars, expected)
            assert good.verification is not None and good.verification.secondary == "binance"
            aggs.echo_key_errors = 2
            failed_over = manager.fetch(BTC, "1m", start, end)
            assert failed_over.provider == "binance"
            errors += [str(a) for a in failed_over.attempts]
            # 2. the key is refused, and the refusal quotes it (AuthError): failover again
            polygon_route.schedule = {
                len(polygon_route.served): Reply(
                    401, {"status": "ERROR", "error": f"Unknown API Key '{KEY}'"}
                )
            }
            refused = manager.fetch(BTC, "1m", start, end)
            errors += [str(a) for a in refused.attempts]
            assert [a.kind for a in refused.attempts] == ["AuthError"]
            # 3. everything down (the polygon breaker, open after two failures, is half-open by
            # now): the exception that reaches the caller, from another manager
            polygon_route.down = True
            clock.sleep(60.0)
            cfg_dead = cfg.model_copy(update={"binance_base_url": dead.url})
            with (
                ProviderManager(cfg_dead, store, **kw) as broken,
                pytest.raises(AllProvidersFailed) as caught,
            ):
                broken.fetch(BTC, "1m", start, end)
            errors.append(str(caught.value))
            errors += [str(a) for a in caught.value.attempts]
            errors += [str(s) for s in manager.status()]
        # the key really was sent (so the test would notice if it leaked)
        assert any(r.query.get("apiKey") == KEY for r in polygon.requests)

    assert "HTTP 500" in " ".join(errors) and "AuthError" in " ".join(errors)
    captured = capsys.readouterr()
    for where, text in {
        "errors": "\n".join(errors),
        "logs": caplog.text,
        "stdout": captured.out,
        "stderr": captured.err,
        "database": _database_text(settings.db_url),
    }.items():
        assert KEY not in text, f"the API key leaked into {where}"
        assert KEY[8:24] not in text, f"part of the API key leaked into {where}"


def test_api_keys_given_to_the_manager_override_settings_and_stay_secret(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    start = origin(3)
    expected = truth(start, 200)
    aggs = Aggregates(expected)
    config = make_config(crypto=("polygon",))
    with net.play(polygon=aggs) as (polygon,):
        aggs.url = polygon.url
        base = settings_for(settings, tmp_path, config, polygon=polygon.url)
        cfg = base.model_copy(update={"polygon_api_key": SecretStr("settings-key-that-is-wrong")})
        with ProviderManager(cfg, store, config=config, api_keys={"polygon": SecretStr(KEY)}) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=200))
        with (
            ProviderManager(cfg, store, config=config) as manager,
            pytest.raises(AllProvidersFailed) as caught,
        ):
            manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=200))
    assert result.provider == "polygon"
    assert_same_bars(result.bars, expected)
    assert [a.kind for a in caught.value.attempts] == ["AuthError"]
    assert "settings-key-that-is-wrong" not in str(caught.value)
    assert KEY not in caplog.text and "settings-key-that-is-wrong" not in caplog.text


def test_a_provider_that_needs_a_key_and_has_none_is_skipped_without_a_request(
    net: Loopback, settings: Settings, store: Engine, tmp_path: Path
) -> None:
    start = origin(3)
    expected = truth(start, 30)
    config = make_config(crypto=("polygon", "binance"))
    aggs = Aggregates(expected)
    with net.play(polygon=aggs, binance=Klines(expected)) as (polygon, binance):
        cfg = settings_for(settings, tmp_path, config, polygon=polygon.url, binance=binance.url)
        with ProviderManager(cfg, store, config=config) as manager:
            result = manager.fetch(BTC, "1m", start, start + pd.Timedelta(minutes=30), verify=False)
            assert manager.breaker("polygon").state == "closed"
        assert len(polygon.requests) == 0
    assert result.provider == "binance"
    assert [(a.provider, a.kind) for a in result.attempts] == [("polygon", "AuthError")]
    assert "FKS_POLYGON_API_KEY" in result.attempts[0].error
