"""When an asset trades, as the execution layer asks it: is a session open now, and which session
an order belongs to (its close is when a DAY order expires).

Both read :meth:`market.calendars.Calendar.sessions`, so ``24/7``, ``24/5`` and every exchange
calendar (holidays, early closes, lunch breaks) answer alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import pandas as pd

from market.bars import as_utc
from market.calendars import AlwaysOpenCalendar, Calendar

_LOOKBACK = pd.Timedelta(days=2)
_LOOKAHEAD = pd.Timedelta(days=10)
_MAX_LOOKAHEAD = pd.Timedelta(days=60)
_DAY = pd.Timedelta(days=1)

# (date, open, close, break_start, break_end) of each session, as read from Calendar.sessions.
_Row = tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp, pd.Timestamp, pd.Timestamp]


@dataclass(frozen=True)
class Session:
    """One session of a calendar: its date (00:00 UTC) and its open and close (UTC)."""

    date: pd.Timestamp
    open: pd.Timestamp
    close: pd.Timestamp


@lru_cache(maxsize=4096)
def _rows(calendar: Calendar, first_day: pd.Timestamp, last_day: pd.Timestamp) -> tuple[_Row, ...]:
    """The sessions of ``calendar`` dated ``first_day`` to ``last_day`` (both 00:00 UTC), memoised:
    a calendar's sessions over given dates never change. A CalendarSpanError is not cached."""
    frame = calendar.sessions(first_day, last_day)
    return tuple(
        (pd.Timestamp(date), opens, closes, break_start, break_end)
        for date, opens, closes, break_start, break_end in zip(
            frame.index, frame["open"], frame["close"], frame["break_start"], frame["break_end"], strict=True
        )
    )


def always_open(calendar: Calendar) -> bool:
    """True for exactly the built-in 24/7 calendar (a subclass might change its sessions): a
    session is open at every instant of it."""
    return type(calendar) is AlwaysOpenCalendar


_always_open = always_open


def session_at(calendar: Calendar, ts: pd.Timestamp | str) -> Session | None:
    """The session open at ``ts`` (``open <= ts < close``, not inside a break), or None when the
    market is closed then.

    Raises:
        market.calendars.CalendarSpanError: ``ts`` lies outside the span the calendar knows.
    """
    when = as_utc(ts)
    day = when.normalize().as_unit("ns")
    if _always_open(calendar):
        return Session(day, day, day + _DAY)
    # Calendar.sessions reads dates only, so [when - 2 days, when + 1 day] is these whole days.
    for date, opens, closes, break_start, break_end in _rows(calendar, day - _LOOKBACK, day + _DAY):
        if opens <= when < closes:
            in_break = not pd.isna(break_start) and break_start <= when < break_end
            return None if in_break else Session(date, opens, closes)
    return None


def session_from(calendar: Calendar, ts: pd.Timestamp | str) -> Session:
    """The session ``ts`` falls in (a lunch break included), else the next one to open after it.

    A ``1d`` bar's ``ts`` (the session date at 00:00 UTC) gives its own session on every calendar.

    Raises:
        market.calendars.CalendarSpanError: the dates lie outside the span the calendar knows.
        ValueError: no session opens within 60 days after ``ts``.
    """
    when = as_utc(ts)
    day = when.normalize().as_unit("ns")
    if _always_open(calendar):
        return Session(day, day, day + _DAY)
    for ahead in (_LOOKAHEAD, _MAX_LOOKAHEAD):
        for date, opens, closes, _, _ in _rows(calendar, day - _LOOKBACK, day + ahead):
            if closes > when:
                return Session(date, opens, closes)
    raise ValueError(f"the {calendar.name} calendar has no session within 60 days after {when}")
