"""When an asset trades, as the execution layer asks it: is a session open now, and which session
an order belongs to (its close is when a DAY order expires).

Both read :meth:`market.calendars.Calendar.sessions`, so ``24/7``, ``24/5`` and every exchange
calendar (holidays, early closes, lunch breaks) answer alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from market.bars import as_utc
from market.calendars import Calendar

_LOOKBACK = pd.Timedelta(days=2)
_LOOKAHEAD = pd.Timedelta(days=10)
_MAX_LOOKAHEAD = pd.Timedelta(days=60)


@dataclass(frozen=True)
class Session:
    """One session of a calendar: its date (00:00 UTC) and its open and close (UTC)."""

    date: pd.Timestamp
    open: pd.Timestamp
    close: pd.Timestamp


def session_at(calendar: Calendar, ts: pd.Timestamp | str) -> Session | None:
    """The session open at ``ts`` (``open <= ts < close``, not inside a break), or None when the
    market is closed then.

    Raises:
        market.calendars.CalendarSpanError: ``ts`` lies outside the span the calendar knows.
    """
    when = as_utc(ts)
    frame = calendar.sessions(when - _LOOKBACK, when + pd.Timedelta(days=1))
    for date, opens, closes, break_start, break_end in zip(
        frame.index, frame["open"], frame["close"], frame["break_start"], frame["break_end"], strict=True
    ):
        if opens <= when < closes:
            in_break = not pd.isna(break_start) and break_start <= when < break_end
            return None if in_break else Session(pd.Timestamp(date), opens, closes)
    return None


def session_from(calendar: Calendar, ts: pd.Timestamp | str) -> Session:
    """The session ``ts`` falls in (a lunch break included), else the next one to open after it.

    A ``1d`` bar's ``ts`` (the session date at 00:00 UTC) gives its own session on every calendar.

    Raises:
        market.calendars.CalendarSpanError: the dates lie outside the span the calendar knows.
        ValueError: no session opens within 60 days after ``ts``.
    """
    when = as_utc(ts)
    for ahead in (_LOOKAHEAD, _MAX_LOOKAHEAD):
        frame = calendar.sessions(when - _LOOKBACK, when + ahead)
        later = frame[frame["close"] > when]
        if len(later):
            row = later.iloc[0]
            return Session(pd.Timestamp(later.index[0]), row["open"], row["close"])
    raise ValueError(f"the {calendar.name} calendar has no session within 60 days after {when}")
