"""storage.provider_usage on SQLite and PostgreSQL: per-day call/credit accounting and the stored
circuit breakers."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import Engine, select

from config.providers import BreakerPolicy
from providers.base import Unavailable
from providers.breaker import BreakerState, CircuitBreaker
from providers.ratelimit import period_start
from storage.provider_usage import (
    USAGE_COLUMNS,
    BreakerRecord,
    calls_used,
    credits_used,
    load_breakers,
    record_calls,
    save_breaker,
    scrub_error,
    usage_summary,
)
from storage.schema import ProviderUsageRow
from tests.provider_fakes import run_in_threads


def _at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def _rows(engine: Engine) -> list[tuple[object, ...]]:
    t = ProviderUsageRow.__table__
    with engine.connect() as conn:
        query = select(t.c.provider, t.c.day, t.c.calls, t.c.credits, t.c.failures, t.c.rate_limited)
        return [tuple(r) for r in conn.execute(query.order_by(t.c.provider, t.c.day))]


def test_record_calls_increments_the_row_of_the_utc_day(engine: Engine) -> None:
    with engine.begin() as conn:
        record_calls(conn, "coinmarketcap", credits=1, at=_at("2024-03-05T10:00:00"))
        record_calls(conn, "coinmarketcap", credits=2.5, at=_at("2024-03-05T23:59:59"))
        record_calls(
            conn,
            "coinmarketcap",
            calls=2,
            failures=1,
            rate_limited=1,
            last_error="RateLimited: 429",
            at=_at("2024-03-05T12:00:00"),
        )
        # 2024-03-06 01:00 in UTC+3 is still 2024-03-05 22:00 UTC: same day
        plus3 = dt.timezone(dt.timedelta(hours=3))
        record_calls(conn, "coinmarketcap", at=dt.datetime(2024, 3, 6, 1, 0, tzinfo=plus3))
        record_calls(conn, "coinmarketcap", credits=4, at=_at("2024-03-06T00:00:00"))
        record_calls(conn, "binance", at=_at("2024-03-05T10:00:00"))
    assert _rows(engine) == [
        ("binance", "2024-03-05", 1, 0.0, 0, 0),
        ("coinmarketcap", "2024-03-05", 5, 3.5, 1, 1),
        ("coinmarketcap", "2024-03-06", 1, 4.0, 0, 0),
    ]
    with engine.connect() as conn:
        summary = usage_summary(conn)
        row = summary.set_index("provider").loc["coinmarketcap"]
        # a success after the error does not erase it; the last call is the latest recorded
        assert row["last_error"] == "RateLimited: 429"
        assert row["last_call"] == pd.Timestamp("2024-03-06T00:00:00", tz="UTC")


def test_credits_and_calls_are_counted_from_the_start_of_the_period(engine: Engine) -> None:
    with engine.begin() as conn:
        for day in ("2024-01-30", "2024-01-31", "2024-02-01", "2024-02-02"):
            record_calls(conn, "coinmarketcap", calls=2, credits=10, at=_at(f"{day}T12:00:00"))
        record_calls(conn, "polygon", calls=7, at=_at("2024-02-02T12:00:00"))
    now = _at("2024-02-02T15:30:00")
    with engine.connect() as conn:
        assert credits_used(conn, "coinmarketcap", period_start("month", now)) == 20.0
        assert calls_used(conn, "coinmarketcap", period_start("month", now)) == 4
        assert credits_used(conn, "coinmarketcap", period_start("day", now)) == 10.0
        # ``since`` counts from its UTC day, naive taken as UTC, pandas timestamps accepted
        assert credits_used(conn, "coinmarketcap", dt.datetime(2024, 1, 31, 18)) == 30.0
        assert calls_used(conn, "coinmarketcap", pd.Timestamp("2024-01-01", tz="UTC")) == 8
        assert credits_used(conn, "never-called", period_start("month", now)) == 0.0
        assert calls_used(conn, "polygon", period_start("day", now)) == 7
        assert isinstance(calls_used(conn, "polygon", now), int)


def test_usage_summary_per_provider_with_and_without_since(engine: Engine) -> None:
    with engine.connect() as conn:
        empty = usage_summary(conn)
    assert list(empty.columns) == list(USAGE_COLUMNS) and empty.empty
    assert str(empty["last_call"].dtype) == "datetime64[ns, UTC]"
    with engine.begin() as conn:
        record_calls(
            conn, "yahoo", calls=3, failures=1, last_error="Unavailable: old", at=_at("2024-05-01T08:00")
        )
        record_calls(
            conn, "yahoo", calls=2, failures=2, last_error="BadResponse: new", at=_at("2024-05-03T09:00")
        )
        record_calls(conn, "yahoo", calls=1, at=_at("2024-05-04T10:00"))
        record_calls(conn, "binance", calls=10, rate_limited=3, at=_at("2024-05-02T07:00"))
        record_calls(conn, "alphavantage", calls=1, credits=1, at=_at("2024-04-30T23:00"))
    with engine.connect() as conn:
        every = usage_summary(conn)
        recent = usage_summary(conn, since=_at("2024-05-02T00:00"))
    assert list(every.columns) == list(USAGE_COLUMNS)
    assert every["provider"].tolist() == ["alphavantage", "binance", "yahoo"]
    yahoo = every.set_index("provider").loc["yahoo"]
    assert (yahoo["calls"], yahoo["failures"], yahoo["rate_limited"]) == (6, 3, 0)
    assert yahoo["last_error"] == "BadResponse: new"
    assert yahoo["last_call"] == pd.Timestamp("2024-05-04T10:00", tz="UTC")
    assert every.set_index("provider").loc["binance", "last_error"] is None
    assert every["calls"].dtype == "int64" and every["credits"].dtype == "float64"
    assert recent["provider"].tolist() == ["binance", "yahoo"]
    assert recent.set_index("provider").loc["yahoo", "calls"] == 3


def test_secrets_never_reach_the_stored_errors(engine: Engine) -> None:
    key = "S3CR3TKEY123"
    error = (
        f"Unavailable: GET https://www.alphavantage.co/query?function=TIME_SERIES_DAILY&apikey={key} "
        f"failed; retry https://user:{key}@mirror.example/v2?apiKey={key}&symbol=X "
        f'(token={key}, Authorization: Bearer {key}) X-CMC_PRO_API_KEY: {key} body {{"api_key": "{key}"}}'
    )
    with engine.begin() as conn:
        record_calls(conn, "alphavantage", failures=1, last_error=error)
        save_breaker(
            conn,
            BreakerRecord(
                provider="alphavantage", state="open", consecutive_failures=3, opened_at=1, last_error=error
            ),
        )
    with engine.connect() as conn:
        stored_usage = usage_summary(conn)["last_error"].iloc[0]
        stored_breaker = load_breakers(conn)["alphavantage"].last_error
    for stored in (stored_usage, stored_breaker):
        assert isinstance(stored, str)
        assert key not in stored
        assert "function=TIME_SERIES_DAILY" in stored and "symbol=X" in stored
        assert "apikey=***" in stored and "token=***" in stored and "Bearer ***" in stored


def test_scrub_error_keeps_plain_messages_and_cuts_long_ones() -> None:
    assert scrub_error(None) is None
    plain = "binance: 503 Service Unavailable from https://api.binance.com/api/v3/klines?symbol=BTCUSDT"
    assert scrub_error(plain) == plain
    assert len(scrub_error("x" * 10_000) or "") == 2000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"provider": ""}, "provider must be a non-empty name"),
        ({"provider": "x" * 33}, "at most 32 characters"),
        ({"calls": -1}, "calls must be a non-negative integer"),
        ({"failures": 1.5}, "failures must be a non-negative integer"),
        ({"credits": float("nan")}, "credits must be a finite number"),
        ({"credits": -2}, "credits must not be negative"),
    ],
)
def test_bad_usage_is_refused(engine: Engine, kwargs: dict[str, object], message: str) -> None:
    args = {"provider": "binance", **kwargs}
    provider = args.pop("provider")
    with engine.begin() as conn, pytest.raises(ValueError, match=message):
        record_calls(conn, provider, **args)  # type: ignore[arg-type]


def test_concurrent_writers_lose_no_count(engine: Engine) -> None:
    at = _at("2024-07-01T12:00")
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(20):
                with engine.begin() as conn:
                    record_calls(conn, "binance", credits=0.5, at=at)
        except BaseException as exc:  # reported below
            errors.append(exc)

    run_in_threads(lambda i: writer(), 4, timeout=60)
    assert not errors
    assert _rows(engine) == [("binance", "2024-07-01", 80, 40.0, 0, 0)]


def test_breaker_save_load_roundtrip_and_overwrite(engine: Engine) -> None:
    with engine.connect() as conn:
        assert load_breakers(conn) == {}
    opened_ms = 1_706_745_600_123
    with engine.begin() as conn:
        save_breaker(
            conn,
            BreakerRecord("binance", "open", 3, opened_ms, "Unavailable: 503"),
            at=_at("2024-02-01T00:00:05"),
        )
        save_breaker(conn, BreakerRecord("yahoo", "closed", 0, None, None))
    with engine.connect() as conn:
        stored = load_breakers(conn)
    assert sorted(stored) == ["binance", "yahoo"]
    assert stored["binance"] == BreakerRecord(
        "binance", "open", 3, opened_ms, "Unavailable: 503", pd.Timestamp("2024-02-01T00:00:05", tz="UTC")
    )
    assert stored["yahoo"].opened_at is None and stored["yahoo"].updated_at is not None
    with engine.begin() as conn:
        save_breaker(conn, BreakerRecord("binance", "half_open", 3, opened_ms, "Unavailable: 503"))
    with engine.connect() as conn:
        assert load_breakers(conn)["binance"].state == "half_open"
    with engine.begin() as conn, pytest.raises(ValueError, match="breaker state must be one of"):
        save_breaker(conn, BreakerRecord("binance", "broken", 0, None, None))


def test_a_breaker_persisted_on_change_is_restored_by_a_new_process(engine: Engine) -> None:
    mono, wall = [100.0], [1_717_200_000.0]

    def persist(snapshot: object) -> None:
        with engine.begin() as conn:
            save_breaker(conn, snapshot)  # type: ignore[arg-type]

    policy = BreakerPolicy(failure_threshold=2, reset_timeout_s=120)
    first = CircuitBreaker(
        "polygon", policy, clock=lambda: mono[0], wall_clock=lambda: wall[0], on_change=persist
    )
    first.record_failure(Unavailable("503 at https://api.polygon.io/v2/aggs?apiKey=abcdef"))
    first.record_failure(Unavailable("503 at https://api.polygon.io/v2/aggs?apiKey=abcdef"))
    assert first.state is BreakerState.OPEN
    with engine.connect() as conn:
        record = load_breakers(conn)["polygon"]
    assert record.state == "open" and record.consecutive_failures == 2
    assert record.opened_at == int(wall[0] * 1000)
    assert record.last_error is not None and "abcdef" not in record.last_error

    # a new process, 100 s later, on a different monotonic clock
    wall[0] += 100
    second = CircuitBreaker.from_record(record, policy, clock=lambda: 5.0, wall_clock=lambda: wall[0])
    assert second.state is BreakerState.OPEN
    assert second.half_opens_in() == pytest.approx(20.0)
