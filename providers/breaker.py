"""A circuit breaker per provider: stop calling a source that keeps failing, try it again later.

States (:class:`BreakerState`):

- ``closed``: calls go through; ``policy.failure_threshold`` counted failures in a row open it.
- ``open``: :meth:`CircuitBreaker.before_call` refuses with :class:`CircuitOpen` (an
  :class:`~providers.base.Unavailable`, so the manager fails over) until ``reset_timeout_s`` has
  passed since it opened; then it is ``half_open``.
- ``half_open``: exactly one trial call at a time is let through; ``half_open_successes``
  successful trials close it (failures reset), any failure opens it again (the timer restarts).

Which errors count is the caller's choice: call :meth:`~CircuitBreaker.record_failure` for those
that say the source is unwell (``Unavailable``, ``RateLimited``, ``BadResponse``), and
:meth:`~CircuitBreaker.release` after a call that ended in one that does not (``NotSupported``),
so that a half-open trial slot is not held forever.

``on_change`` is called with a :class:`BreakerSnapshot` on every state transition (the manager
stores it with :func:`storage.provider_usage.save_breaker`); a new process restores the breaker
with :meth:`CircuitBreaker.from_record`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from config.providers import BreakerPolicy
from providers.base import Unavailable

if TYPE_CHECKING:
    from storage.provider_usage import BreakerFields

log = logging.getLogger(__name__)

_MAX_ERROR_CHARS = 500


class BreakerState(StrEnum):
    """State of a circuit breaker."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Unavailable):
    """The provider's circuit breaker refuses calls for now.

    ``retry_at`` is when a call may be let through again, on the breaker's clock (monotonic
    seconds); ``retry_after`` the seconds from the refusal until then.
    """

    def __init__(self, message: str, *, retry_at: float, retry_after: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.retry_after = retry_after


@dataclass(frozen=True)
class BreakerSnapshot:
    """A breaker as it is now: ``opened_at_wall`` is epoch seconds UTC of the last opening (None
    while closed), ``last_error`` the last counted failure (``Type: message``)."""

    provider: str
    state: BreakerState
    consecutive_failures: int
    opened_at_wall: float | None
    last_error: str | None

    @property
    def opened_at(self) -> int | None:
        """``opened_at_wall`` in epoch milliseconds, as :func:`storage.provider_usage.save_breaker`
        stores it."""
        return None if self.opened_at_wall is None else round(self.opened_at_wall * 1000)


def describe_error(error: BaseException) -> str:
    """``Type: message`` of ``error`` on one line, cut to 500 characters."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ").strip()
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."


class CircuitBreaker:
    """The circuit breaker of one provider (thread-safe).

    ``clock`` gives monotonic seconds and ``wall_clock`` epoch seconds. A breaker restored from
    storage passes ``state``, ``failures``, ``opened_at`` (epoch seconds, as
    :attr:`BreakerSnapshot.opened_at_wall`) and ``last_error``; an open breaker restored without
    ``opened_at`` counts its timeout from now. A half-open trial not ended by ``record_*`` or
    :meth:`release` within ``trial_timeout_s`` is given up and the next caller gets the slot.
    """

    def __init__(
        self,
        provider: str,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        state: BreakerState = BreakerState.CLOSED,
        failures: int = 0,
        opened_at: float | None = None,
        on_change: Callable[[BreakerSnapshot], None] | None = None,
        wall_clock: Callable[[], float] = time.time,
        last_error: str | None = None,
        trial_timeout_s: float = 300.0,
    ) -> None:
        if failures < 0:
            raise ValueError(f"failures must not be negative, got {failures}")
        self.provider = provider
        self.policy = policy
        self.trial_timeout_s = trial_timeout_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_change = on_change
        self._lock = threading.RLock()
        self._state = BreakerState(state)
        self._failures = failures
        self._last_error = last_error
        self._successes = 0
        self._trial_started: float | None = None
        self._opened_at: float | None = None
        self._opened_at_wall: float | None = None
        if self._state is not BreakerState.CLOSED:
            now, wall = clock(), wall_clock()
            opened_wall = wall if opened_at is None or not math.isfinite(opened_at) else opened_at
            self._opened_at_wall = opened_wall
            self._opened_at = now - max(0.0, wall - opened_wall)

    @classmethod
    def from_record(
        cls,
        record: BreakerFields,
        policy: BreakerPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_change: Callable[[BreakerSnapshot], None] | None = None,
        trial_timeout_s: float = 300.0,
    ) -> CircuitBreaker:
        """The breaker stored as ``record`` (a :class:`storage.provider_usage.BreakerRecord`:
        ``opened_at`` in epoch milliseconds), under ``policy``.

        Raises:
            ValueError: when the record's state is not a breaker state.
        """
        return cls(
            record.provider,
            policy,
            clock=clock,
            state=BreakerState(record.state),
            failures=record.consecutive_failures,
            opened_at=None if record.opened_at is None else record.opened_at / 1000.0,
            on_change=on_change,
            wall_clock=wall_clock,
            last_error=record.last_error,
            trial_timeout_s=trial_timeout_s,
        )

    # -- state ---------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; reading it turns ``open`` into ``half_open`` once
        ``reset_timeout_s`` has passed."""
        with self._lock:
            self._advance(self._clock())
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Counted failures since the last success."""
        with self._lock:
            return self._failures

    def snapshot(self) -> BreakerSnapshot:
        """The breaker now (after moving ``open`` to ``half_open`` when due)."""
        with self._lock:
            self._advance(self._clock())
            return self._snapshot()

    def half_opens_in(self) -> float | None:
        """Seconds until an open breaker lets a trial call through (0 when due); None unless open."""
        with self._lock:
            now = self._clock()
            self._advance(now)
            if self._state is not BreakerState.OPEN or self._opened_at is None:
                return None
            return max(0.0, self._opened_at + self.policy.reset_timeout_s - now)

    def _snapshot(self) -> BreakerSnapshot:
        return BreakerSnapshot(
            provider=self.provider,
            state=self._state,
            consecutive_failures=self._failures,
            opened_at_wall=self._opened_at_wall,
            last_error=self._last_error,
        )

    def _transition(self, new: BreakerState, now: float) -> None:
        """Move to ``new`` and tell ``on_change``. Holds the lock."""
        self._state = new
        self._trial_started = None
        self._successes = 0
        if new is BreakerState.OPEN:
            self._opened_at = now
            self._opened_at_wall = self._wall_clock()
        elif new is BreakerState.CLOSED:
            self._opened_at = None
            self._opened_at_wall = None
            self._failures = 0
        if self._on_change is not None:
            try:
                self._on_change(self._snapshot())
            except Exception as exc:  # persisting is best effort; it must not hide the call's outcome
                log.warning("%s: could not record breaker state %s: %s", self.provider, new.value, exc)

    def _advance(self, now: float) -> None:
        """Open -> half-open once the reset timeout has passed. Holds the lock."""
        if (
            self._state is BreakerState.OPEN
            and self._opened_at is not None
            and now - self._opened_at >= self.policy.reset_timeout_s
        ):
            self._transition(BreakerState.HALF_OPEN, now)

    # -- calls ---------------------------------------------------------------------------------

    def before_call(self) -> None:
        """Admit one call, or raise :class:`CircuitOpen`.

        Closed: always admitted. Open: refused until ``reset_timeout_s`` has passed. Half-open:
        the first caller gets the single trial slot; others are refused until it ends with
        :meth:`record_success`, :meth:`record_failure` or :meth:`release`.

        Raises:
            CircuitOpen: with ``retry_at``/``retry_after`` and a message that says when the
                breaker half-opens.
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            if self._state is BreakerState.CLOSED:
                return
            if self._state is BreakerState.OPEN:
                raise self._refusal(now)
            if self._trial_started is not None and now - self._trial_started < self.trial_timeout_s:
                raise CircuitOpen(
                    f"{self.provider}: circuit breaker half-open and its one trial call is in flight; "
                    "try another provider",
                    retry_at=now,
                    retry_after=0.0,
                )
            self._trial_started = now

    def _refusal(self, now: float) -> CircuitOpen:
        opened = self._opened_at if self._opened_at is not None else now
        retry_at = opened + self.policy.reset_timeout_s
        wait = max(0.0, retry_at - now)
        when = datetime.fromtimestamp(self._wall_clock() + wait, tz=UTC)
        last = f" (last: {self._last_error})" if self._last_error else ""
        return CircuitOpen(
            f"{self.provider}: circuit breaker open after {self._failures} consecutive failures{last}; "
            f"half-opens in {wait:.1f} s, at {when:%Y-%m-%d %H:%M:%S} UTC",
            retry_at=retry_at,
            retry_after=wait,
        )

    def record_success(self) -> None:
        """A call admitted by :meth:`before_call` succeeded.

        Closed: the failure count resets. Half-open: one more successful trial; enough of them
        close the breaker. Open (a call that started before it opened): ignored.
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            if self._state is BreakerState.CLOSED:
                self._failures = 0
            elif self._state is BreakerState.HALF_OPEN:
                self._trial_started = None
                self._successes += 1
                if self._successes >= self.policy.half_open_successes:
                    self._transition(BreakerState.CLOSED, now)

    def record_failure(self, error: BaseException) -> None:
        """A call admitted by :meth:`before_call` failed with ``error`` (one that counts).

        Closed: ``failure_threshold`` failures in a row open the breaker. Half-open: it opens
        again and the reset timer restarts. Open: counted, the timer is left alone.
        """
        with self._lock:
            now = self._clock()
            self._advance(now)
            self._failures += 1
            self._last_error = describe_error(error)
            if self._state is BreakerState.HALF_OPEN or (
                self._state is BreakerState.CLOSED and self._failures >= self.policy.failure_threshold
            ):
                self._transition(BreakerState.OPEN, now)

    def release(self) -> None:
        """A call admitted by :meth:`before_call` ended in a way that says nothing about the
        provider's health (``NotSupported``, a bad symbol): free the half-open trial slot."""
        with self._lock:
            if self._state is BreakerState.HALF_OPEN:
                self._trial_started = None
