"""Rate limits and credit budgets of the online providers.

:class:`TokenBucket` paces requests: it holds at most ``limit.capacity`` tokens, starts full and
refills at ``limit.rate`` tokens per second; each request takes one token. Over any window of
``W`` seconds it admits at most ``capacity + rate * W`` requests, which is the bound the
provider's documented free tier asks for.

:class:`CreditBudget` guards an allowance of credits per UTC calendar day or month (CoinMarketCap's
monthly credits, Alpha Vantage's daily requests): once spent, :meth:`CreditBudget.check` raises
:class:`BudgetExceeded` (a :class:`~providers.base.RateLimited`) whose ``retry_after`` is the
number of seconds until the period resets, so the manager fails over instead of waiting.

Both take their clocks as arguments so tests run on fake time.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Callable
from typing import Literal

from config.providers import Budget, RateLimit
from providers.base import RateLimited

Period = Literal["day", "month"]

# Refills are float arithmetic: a request that waited exactly the advertised time may find
# 0.9999999999 tokens. Anything this close to enough counts as enough.
_EPSILON = 1e-9


class TokenBucket:
    """A thread-safe token bucket: ``limit.capacity`` tokens at most, refilled at ``limit.rate``/s.

    ``clock`` gives seconds (monotonic) and ``sleep`` waits seconds; they must agree (a fake
    ``sleep`` must advance the fake ``clock``). ``name`` only labels error messages.
    """

    def __init__(
        self,
        limit: RateLimit,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        name: str = "",
    ) -> None:
        self.limit = limit
        self.rate = float(limit.rate)
        self.capacity = float(limit.capacity)
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._tokens = self.capacity
        self._stamp = clock()

    def _refill(self, now: float) -> None:
        """Add the tokens earned since the last refill (never above capacity). Holds the lock."""
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def _check_tokens(self, tokens: float) -> None:
        if not (isinstance(tokens, int | float) and math.isfinite(tokens) and tokens > 0):
            raise ValueError(f"tokens must be a positive number, got {tokens!r}")
        if tokens > self.capacity + _EPSILON:
            raise ValueError(
                f"{self.name or 'bucket'}: {tokens:g} tokens can never be taken from a bucket of "
                f"{self.capacity:g}; raise `burst` in config/providers.yaml"
            )

    @property
    def available(self) -> float:
        """Tokens in the bucket now (refilled up to the current clock)."""
        with self._lock:
            self._refill(self._clock())
            return self._tokens

    def try_acquire(self, tokens: float = 1.0) -> float:
        """Take ``tokens`` now if they are there and return 0.0; otherwise take nothing and return
        the seconds until they will be.

        Raises:
            ValueError: when ``tokens`` is not positive or exceeds the bucket's capacity.
        """
        self._check_tokens(tokens)
        with self._lock:
            self._refill(self._clock())
            missing = tokens - self._tokens
            if missing <= _EPSILON:
                self._tokens -= tokens
                return 0.0
            return missing / self.rate

    def acquire(self, tokens: float = 1.0, *, max_wait: float | None = None) -> float:
        """Block (through ``sleep``, outside the lock) until ``tokens`` are taken; return the
        seconds waited on ``clock``.

        With ``max_wait``, a wait that would add up to more than ``max_wait`` seconds is not
        started: :class:`~providers.base.RateLimited` is raised with ``retry_after`` set to the
        wait needed, and nothing is taken (the manager then fails over instead of blocking).

        Raises:
            ValueError: when ``tokens`` is not positive or exceeds the bucket's capacity.
            RateLimited: when the wait would exceed ``max_wait``.
        """
        started = self._clock()
        waited = 0.0
        while True:
            wait = self.try_acquire(tokens)
            if wait == 0.0:
                return max(0.0, self._clock() - started)
            if max_wait is not None and waited + wait > max_wait:
                who = self.name or "provider"
                raise RateLimited(
                    f"{who}: rate limit of {self.limit.requests:g} requests per "
                    f"{self.limit.per_seconds:g} s reached; next request possible in {wait:.1f} s",
                    retry_after=wait,
                )
            self._sleep(wait)
            waited += wait


class BudgetExceeded(RateLimited):
    """The provider's credit budget for the current period is spent; ``retry_after`` is the
    number of seconds until the period resets."""


def _as_utc(now: dt.datetime) -> dt.datetime:
    """``now`` in UTC; a naive datetime is taken as UTC."""
    if now.tzinfo is None:
        return now.replace(tzinfo=dt.UTC)
    return now.astimezone(dt.UTC)


def period_start(period: Period, now: dt.datetime) -> dt.datetime:
    """Start (UTC midnight) of the calendar ``period`` (``"day"`` or ``"month"``) that holds ``now``.

    Raises:
        ValueError: for another period.
    """
    now = _as_utc(now)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    raise ValueError(f"budget period must be 'day' or 'month', got {period!r}")


def next_reset(period: Period, now: dt.datetime) -> dt.datetime:
    """Start (UTC midnight) of the calendar ``period`` after the one that holds ``now``.

    Raises:
        ValueError: for another period.
    """
    start = period_start(period, now)
    if period == "day":
        return start + dt.timedelta(days=1)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


_ADJECTIVE = {"day": "daily", "month": "monthly"}


class CreditBudget:
    """A credit allowance of one provider per UTC calendar period.

    ``used()`` returns the credits already used in the current period (the manager reads them
    from the ``provider_usage`` table, counting from :meth:`since`); ``wall_clock`` gives epoch
    seconds.
    """

    def __init__(
        self,
        provider: str,
        budget: Budget,
        used: Callable[[], float],
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.provider = provider
        self.budget = budget
        self._used = used
        self._wall_clock = wall_clock

    def now(self) -> dt.datetime:
        """The wall clock as a UTC datetime."""
        return dt.datetime.fromtimestamp(self._wall_clock(), tz=dt.UTC)

    def since(self) -> dt.datetime:
        """Start of the current budget period (UTC)."""
        return period_start(self.budget.period, self.now())

    def resets_at(self) -> dt.datetime:
        """When the current budget period ends and the credits are available again (UTC)."""
        return next_reset(self.budget.period, self.now())

    def remaining(self) -> float:
        """Credits left in the current period (never negative)."""
        return max(0.0, float(self.budget.credits) - float(self._used()))

    def check(self, cost: float = 1.0) -> None:
        """Raise :class:`BudgetExceeded` when ``cost`` more credits would overrun the budget.

        Raises:
            BudgetExceeded: with ``retry_after`` = seconds until the period resets; the message
                says how much was used, when it resets and how to raise the budget.
        """
        used = float(self._used())
        if used + cost <= self.budget.credits + _EPSILON:
            return
        now = self.now()
        reset = next_reset(self.budget.period, now)
        raise BudgetExceeded(
            f"{self.provider}: {_ADJECTIVE[self.budget.period]} credit budget of {self.budget.credits} "
            f"spent ({used:g} used); resets at {reset:%Y-%m-%d %H:%M} UTC; "
            "raise `budget` in config/providers.yaml or wait",
            retry_after=max(0.0, (reset - now).total_seconds()),
        )
