"""providers.ratelimit: the token bucket's bound over any window, and credit budgets per period.

Everything runs on fake clocks: ``sleep`` advances the clock, nothing really waits.
"""

from __future__ import annotations

import bisect
import datetime as dt
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.providers import Budget, RateLimit
from providers.base import RateLimited
from providers.ratelimit import BudgetExceeded, CreditBudget, TokenBucket, next_reset, period_start

# Float slack for the bound (tokens are floats; refills round).
_SLACK = 1e-6


class FakeClock:
    """A clock that only moves when someone sleeps (or the test advances it)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "the bucket must never ask to sleep for nothing"
        self.sleeps.append(seconds)
        self.now += seconds


class ThreadedClock:
    """Virtual time for many threads: a sleeping thread wakes at (the time it last read) + seconds,
    and each thread remembers the last time it read, which after a successful ``acquire`` is the
    instant its token was taken (read under the bucket's lock)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()
        self._local = threading.local()

    def __call__(self) -> float:
        with self._lock:
            self._local.last = self.now
            return self.now

    def last_read(self) -> float:
        return float(self._local.last)

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now = max(self.now, self._local.last + seconds)


def max_in_window(times: list[float], window: float) -> int:
    """The most events in any closed window ``[t, t + window]`` (it suffices to start at events)."""
    times = sorted(times)
    return max((bisect.bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


def assert_bound(times: list[float], limit: RateLimit, windows: list[float]) -> None:
    for w in windows:
        allowed = limit.capacity + limit.rate * w
        assert max_in_window(times, w) <= allowed + _SLACK, (w, max_in_window(times, w), allowed)


def test_bucket_starts_full_then_paces_at_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(RateLimit(requests=10, per_seconds=1, burst=3), clock=clock, sleep=clock.sleep)
    assert bucket.available == pytest.approx(3.0)
    assert [bucket.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = bucket.try_acquire()
    assert wait == pytest.approx(0.1)
    assert bucket.available == pytest.approx(0.0), "a refused try_acquire takes nothing"
    assert bucket.acquire() == pytest.approx(0.1)
    assert clock.sleeps == [pytest.approx(0.1)]
    clock.now += 100
    assert bucket.available == pytest.approx(3.0), "refill never goes above capacity"


def test_acquire_returns_the_wait_and_never_exceeds_the_rate_over_a_long_run() -> None:
    limit = RateLimit(requests=5, per_seconds=60)  # Alpha Vantage's 5/min: capacity 5
    clock = FakeClock(start=0.0)
    bucket = TokenBucket(limit, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(200):
        bucket.acquire()
        times.append(clock())
    assert times[:5] == [0.0] * 5
    assert times[5] == pytest.approx(12.0)
    assert times[-1] == pytest.approx((200 - 5) * 12.0)
    assert_bound(times, limit, [0.0, 1.0, 11.9, 12.0, 59.0, 60.0, 600.0, 3600.0])


def test_many_threads_never_exceed_capacity_plus_rate_times_window() -> None:
    limit = RateLimit(requests=10, per_seconds=1, burst=4)
    clock = ThreadedClock()
    bucket = TokenBucket(limit, clock=clock, sleep=clock.sleep)
    times: list[float] = []
    guard = threading.Lock()
    start = threading.Barrier(8)

    def worker() -> None:
        start.wait()
        for _ in range(40):
            bucket.acquire()
            stamp = clock.last_read()
            with guard:
                times.append(stamp)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)
    assert len(times) == 320
    assert_bound(times, limit, [0.0, 0.05, 0.1, 0.25, 1.0, 3.3, 10.0, 40.0])
    # and it is not needlessly slow: 320 tokens = 4 at once + 316 at 10/s
    assert max(times) == pytest.approx((320 - 4) / 10, rel=1e-6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    requests=st.floats(min_value=0.5, max_value=50),
    per_seconds=st.floats(min_value=0.1, max_value=120),
    burst=st.one_of(st.none(), st.integers(min_value=1, max_value=20)),
    pattern=st.lists(
        st.tuples(st.floats(min_value=0, max_value=30), st.sampled_from(["try", "acquire"])),
        min_size=1,
        max_size=80,
    ),
)
def test_bucket_bound_holds_for_any_limit_and_request_pattern(
    requests: float, per_seconds: float, burst: int | None, pattern: list[tuple[float, str]]
) -> None:
    limit = RateLimit(requests=requests, per_seconds=per_seconds, burst=burst)
    clock = FakeClock(start=0.0)
    bucket = TokenBucket(limit, clock=clock, sleep=clock.sleep)
    times: list[float] = []
    for gap, how in pattern:
        clock.now += gap
        if how == "try":
            if bucket.try_acquire() == 0.0:
                times.append(clock())
        else:
            waited = bucket.acquire()
            assert waited >= 0.0
            times.append(clock())
        assert -_SLACK <= bucket.available <= limit.capacity + _SLACK
    # the tightest windows start and end at acquisitions: check every pair
    times.sort()
    for i, first in enumerate(times):
        for j in range(i, len(times)):
            assert j - i + 1 <= limit.capacity + limit.rate * (times[j] - first) + _SLACK, (i, j)


def test_bad_token_counts_are_refused() -> None:
    bucket = TokenBucket(RateLimit(requests=2, per_seconds=1), name="binance")
    with pytest.raises(ValueError, match="positive"):
        bucket.try_acquire(0)
    with pytest.raises(ValueError, match=r"binance: 3 tokens can never be taken.*burst"):
        bucket.acquire(3)


def test_acquire_with_max_wait_fails_fast_instead_of_blocking() -> None:
    clock = FakeClock()
    bucket = TokenBucket(
        RateLimit(requests=25, per_seconds=86_400), clock=clock, sleep=clock.sleep, name="av"
    )
    for _ in range(25):
        bucket.acquire(max_wait=1.0)
    with pytest.raises(RateLimited, match="av: rate limit of 25 requests per 86400 s") as caught:
        bucket.acquire(max_wait=60.0)
    assert caught.value.retry_after == pytest.approx(86_400 / 25)
    assert clock.sleeps == [], "it did not sleep before giving up"
    assert bucket.available == pytest.approx(0.0)


# -- budgets -------------------------------------------------------------------------------------


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()


@pytest.mark.parametrize(
    ("period", "now", "start", "reset"),
    [
        ("day", "2024-03-15T13:45:10", "2024-03-15T00:00:00", "2024-03-16T00:00:00"),
        ("day", "2024-02-29T23:59:59", "2024-02-29T00:00:00", "2024-03-01T00:00:00"),
        ("day", "2023-12-31T23:00:00", "2023-12-31T00:00:00", "2024-01-01T00:00:00"),
        ("month", "2024-01-31T23:59:59", "2024-01-01T00:00:00", "2024-02-01T00:00:00"),
        ("month", "2024-02-01T00:00:00", "2024-02-01T00:00:00", "2024-03-01T00:00:00"),
        ("month", "2024-12-15T08:00:00", "2024-12-01T00:00:00", "2025-01-01T00:00:00"),
    ],
)
def test_period_start_and_next_reset_are_utc_calendar_boundaries(
    period: str, now: str, start: str, reset: str
) -> None:
    when = dt.datetime.fromisoformat(now).replace(tzinfo=dt.UTC)
    assert period_start(period, when) == dt.datetime.fromisoformat(start).replace(tzinfo=dt.UTC)  # type: ignore[arg-type]
    assert next_reset(period, when) == dt.datetime.fromisoformat(reset).replace(tzinfo=dt.UTC)  # type: ignore[arg-type]


def test_periods_use_the_utc_calendar_whatever_the_input_zone() -> None:
    # 2024-01-31 20:00 in New York is already February in UTC.
    new_york = dt.timezone(dt.timedelta(hours=-5))
    when = dt.datetime(2024, 1, 31, 20, 0, tzinfo=new_york)
    assert period_start("month", when) == dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    assert next_reset("month", when) == dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    naive = dt.datetime(2024, 5, 5, 12)
    assert period_start("day", naive) == dt.datetime(2024, 5, 5, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="'day' or 'month'"):
        period_start("week", naive)  # type: ignore[arg-type]


def test_budget_refuses_when_spent_and_says_when_it_resets_across_the_month_boundary() -> None:
    used = {"credits": 0.0}
    wall = {"now": _ts("2024-01-31T23:00:00")}
    budget = CreditBudget(
        "coinmarketcap",
        Budget(credits=10_000, period="month"),
        used=lambda: used["credits"],
        wall_clock=lambda: wall["now"],
    )
    assert budget.since() == dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    assert budget.remaining() == 10_000
    budget.check()
    used["credits"] = 9_999
    budget.check(1)  # exactly the last credit
    with pytest.raises(BudgetExceeded) as caught:
        budget.check(2)
    used["credits"] = 10_000
    assert budget.remaining() == 0
    with pytest.raises(BudgetExceeded) as caught:
        budget.check()
    assert isinstance(caught.value, RateLimited), "the manager fails over on it like on any rate limit"
    assert str(caught.value) == (
        "coinmarketcap: monthly credit budget of 10000 spent (10000 used); resets at 2024-02-01 00:00 UTC; "
        "raise `budget` in config/providers.yaml or wait"
    )
    assert caught.value.retry_after == pytest.approx(3600.0)
    # a minute into February the manager's ``used`` reads the new period (counted from since())
    wall["now"] = _ts("2024-02-01T00:01:00")
    assert budget.since() == dt.datetime(2024, 2, 1, tzinfo=dt.UTC)
    assert budget.resets_at() == dt.datetime(2024, 3, 1, tzinfo=dt.UTC)
    used["credits"] = 0.0
    budget.check()


def test_daily_budget_message_and_retry_after() -> None:
    budget = CreditBudget(
        "alphavantage",
        Budget(credits=25, period="day"),
        used=lambda: 25.0,
        wall_clock=lambda: _ts("2024-06-30T18:00:00"),
    )
    with pytest.raises(
        BudgetExceeded,
        match=r"alphavantage: daily credit budget of 25 spent \(25 used\); "
        r"resets at 2024-07-01 00:00 UTC",
    ) as caught:
        budget.check()
    assert caught.value.retry_after == pytest.approx(6 * 3600.0)
