"""providers.breaker: closed -> open -> half-open -> closed, half-open -> open, one trial at a time.

Runs on a fake clock; nothing really waits.
"""

from __future__ import annotations

import threading

import pytest

from config.providers import BreakerPolicy
from providers.base import NotSupported, Unavailable
from providers.breaker import BreakerSnapshot, BreakerState, CircuitBreaker, CircuitOpen
from storage.provider_usage import BreakerRecord

WALL0 = 1_706_745_600.0  # 2024-02-01 00:00:00 UTC


class Clocks:
    """A monotonic clock and a wall clock that move together."""

    def __init__(self) -> None:
        self.mono = 50.0
        self.wall = WALL0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def _breaker(
    clocks: Clocks, policy: BreakerPolicy, changes: list[BreakerSnapshot] | None = None, **kwargs: object
) -> CircuitBreaker:
    return CircuitBreaker(
        "binance",
        policy,
        clock=lambda: clocks.mono,
        wall_clock=lambda: clocks.wall,
        on_change=None if changes is None else changes.append,
        **kwargs,  # type: ignore[arg-type]
    )


def test_full_cycle_closed_open_half_open_closed(clocks: Clocks) -> None:
    changes: list[BreakerSnapshot] = []
    policy = BreakerPolicy(failure_threshold=3, reset_timeout_s=30, half_open_successes=2)
    breaker = _breaker(clocks, policy, changes)
    assert breaker.state is BreakerState.CLOSED

    # failures below the threshold, then a success: the count resets
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure(Unavailable("503 from https://api.binance.com/api/v3/klines"))
    breaker.before_call()
    breaker.record_success()
    assert breaker.consecutive_failures == 0
    assert breaker.state is BreakerState.CLOSED

    # three in a row open it
    for n in range(3):
        breaker.before_call()
        breaker.record_failure(Unavailable(f"timeout {n}"))
    assert breaker.state is BreakerState.OPEN
    assert [c.state for c in changes] == [BreakerState.OPEN]
    opened = changes[-1]
    assert opened.consecutive_failures == 3
    assert opened.opened_at_wall == WALL0
    assert opened.opened_at == int(WALL0 * 1000)
    assert opened.last_error == "Unavailable: timeout 2"

    clocks.advance(10)
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call()
    refusal = caught.value
    assert isinstance(refusal, Unavailable), "the manager fails over on it"
    assert refusal.retry_after == pytest.approx(20.0)
    assert refusal.retry_at == pytest.approx(50.0 + 30.0)
    assert str(refusal) == (
        "binance: circuit breaker open after 3 consecutive failures (last: Unavailable: timeout 2); "
        "half-opens in 20.0 s, at 2024-02-01 00:00:30 UTC"
    )
    assert breaker.half_opens_in() == pytest.approx(20.0)

    # after the reset timeout, reading the state half-opens it
    clocks.advance(20)
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.half_opens_in() is None
    assert [c.state for c in changes] == [BreakerState.OPEN, BreakerState.HALF_OPEN]

    # two successful trials (one at a time) close it
    breaker.before_call()
    with pytest.raises(CircuitOpen, match="half-open and its one trial call is in flight"):
        breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.HALF_OPEN, "half_open_successes=2: one is not enough"
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert [c.state for c in changes] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.CLOSED]
    closed = changes[-1]
    assert closed.consecutive_failures == 0
    assert closed.opened_at_wall is None and closed.opened_at is None
    breaker.before_call()  # closed again: calls go through


def test_failure_in_half_open_reopens_and_restarts_the_timer(clocks: Clocks) -> None:
    changes: list[BreakerSnapshot] = []
    breaker = _breaker(clocks, BreakerPolicy(failure_threshold=1, reset_timeout_s=60), changes)
    breaker.before_call()
    breaker.record_failure(Unavailable("500"))
    assert breaker.state is BreakerState.OPEN
    clocks.advance(60)
    breaker.before_call()  # the trial (before_call half-opens it when due)
    assert breaker.state is BreakerState.HALF_OPEN
    clocks.advance(5)
    breaker.record_failure(Unavailable("500 again"))
    assert breaker.state is BreakerState.OPEN
    assert [c.state for c in changes] == [BreakerState.OPEN, BreakerState.HALF_OPEN, BreakerState.OPEN]
    assert changes[-1].opened_at_wall == WALL0 + 65, "the timer restarts at the failed trial"
    assert changes[-1].consecutive_failures == 2
    clocks.advance(59)
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call()
    assert caught.value.retry_after == pytest.approx(1.0)
    clocks.advance(1)
    breaker.before_call()
    assert breaker.state is BreakerState.HALF_OPEN


def test_open_breaker_ignores_late_results_of_calls_started_before_it_opened(clocks: Clocks) -> None:
    changes: list[BreakerSnapshot] = []
    breaker = _breaker(clocks, BreakerPolicy(failure_threshold=2, reset_timeout_s=30), changes)
    breaker.record_failure(Unavailable("a"))
    breaker.record_failure(Unavailable("b"))
    clocks.advance(20)
    breaker.record_failure(Unavailable("late"))
    breaker.record_success()
    assert breaker.state is BreakerState.OPEN
    assert breaker.half_opens_in() == pytest.approx(10.0), "a late failure does not restart the timer"
    assert len(changes) == 1


def test_exactly_one_trial_call_in_half_open_across_threads(clocks: Clocks) -> None:
    breaker = _breaker(clocks, BreakerPolicy(failure_threshold=1, reset_timeout_s=0.5))
    breaker.record_failure(Unavailable("down"))
    clocks.advance(1)
    admitted: list[int] = []
    refused: list[int] = []
    guard = threading.Lock()
    start = threading.Barrier(16)

    def caller(n: int) -> None:
        start.wait()
        try:
            breaker.before_call()
        except CircuitOpen:
            with guard:
                refused.append(n)
        else:
            with guard:
                admitted.append(n)

    threads = [threading.Thread(target=caller, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(admitted) == 1 and len(refused) == 15
    # the trial fails: everyone is refused again until the timeout passes
    breaker.record_failure(Unavailable("still down"))
    assert breaker.state is BreakerState.OPEN


def test_release_frees_the_trial_slot_after_an_error_that_does_not_count(clocks: Clocks) -> None:
    breaker = _breaker(clocks, BreakerPolicy(failure_threshold=1, reset_timeout_s=10))
    breaker.record_failure(Unavailable("down"))
    clocks.advance(10)
    breaker.before_call()
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    breaker.release()  # the trial asked for a symbol the provider does not have (NotSupported)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_a_forgotten_trial_is_given_up_after_the_trial_timeout(clocks: Clocks) -> None:
    breaker = _breaker(clocks, BreakerPolicy(failure_threshold=1, reset_timeout_s=10), trial_timeout_s=30)
    breaker.record_failure(Unavailable("down"))
    clocks.advance(10)
    breaker.before_call()  # this caller never reports back
    clocks.advance(29)
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clocks.advance(1)
    breaker.before_call()


def test_only_the_failures_the_caller_records_count(clocks: Clocks) -> None:
    breaker = _breaker(clocks, BreakerPolicy(failure_threshold=2))
    for _ in range(5):
        breaker.before_call()
        # NotSupported says nothing about the provider's health: the caller does not record it
        breaker.release()
    assert breaker.state is BreakerState.CLOSED
    breaker.record_failure(NotSupported("unknown symbol"))  # but it can choose to count anything
    breaker.record_failure(Unavailable("x"))
    assert breaker.state is BreakerState.OPEN


def test_restored_open_breaker_counts_its_timeout_from_when_it_opened(clocks: Clocks) -> None:
    record = BreakerRecord(
        provider="polygon",
        state="open",
        consecutive_failures=4,
        opened_at=int((WALL0 - 50) * 1000),  # opened 50 s ago, in an earlier process
        last_error="Unavailable: 503",
    )
    changes: list[BreakerSnapshot] = []
    breaker = CircuitBreaker.from_record(
        record,
        BreakerPolicy(reset_timeout_s=60),
        clock=lambda: clocks.mono,
        wall_clock=lambda: clocks.wall,
        on_change=changes.append,
    )
    snap = breaker.snapshot()
    assert (snap.provider, snap.state, snap.consecutive_failures) == ("polygon", BreakerState.OPEN, 4)
    assert snap.opened_at == record.opened_at
    assert snap.last_error == "Unavailable: 503"
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call()
    assert caught.value.retry_after == pytest.approx(10.0)
    clocks.advance(10)
    assert breaker.state is BreakerState.HALF_OPEN
    assert [c.state for c in changes] == [BreakerState.HALF_OPEN]


def test_restored_half_open_breaker_lets_one_trial_through(clocks: Clocks) -> None:
    breaker = _breaker(
        clocks, BreakerPolicy(), state=BreakerState.HALF_OPEN, failures=3, opened_at=WALL0 - 600
    )
    breaker.before_call()
    with pytest.raises(CircuitOpen):
        breaker.before_call()


def test_a_failing_on_change_does_not_break_the_breaker(
    clocks: Clocks, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: BreakerSnapshot) -> None:
        raise RuntimeError("database is locked")

    breaker = CircuitBreaker(
        "yahoo", BreakerPolicy(failure_threshold=1), clock=lambda: clocks.mono, on_change=broken
    )
    breaker.record_failure(Unavailable("down"))
    assert breaker.state is BreakerState.OPEN
    assert "yahoo: could not record breaker state open: database is locked" in caplog.text


def test_long_error_messages_are_cut(clocks: Clocks) -> None:
    breaker = _breaker(clocks, BreakerPolicy())
    breaker.record_failure(Unavailable("x" * 5000))
    last = breaker.snapshot().last_error
    assert last is not None and len(last) == 500 and last.endswith("...")
