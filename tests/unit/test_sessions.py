"""execution.sessions: the memoised answers (and the 24/7 shortcut) equal a direct scan of
Calendar.sessions, span errors included."""

from __future__ import annotations

import random

import pandas as pd
import pytest

from execution.sessions import Session, session_at, session_from
from market.calendars import Calendar, CalendarSpanError, get_calendar


def _scan_at(calendar: Calendar, when: pd.Timestamp) -> Session | None:
    frame = calendar.sessions(when - pd.Timedelta(days=2), when + pd.Timedelta(days=1))
    for i, date in enumerate(frame.index):
        row = frame.iloc[i]
        if row["open"] <= when < row["close"]:
            in_break = not pd.isna(row["break_start"]) and row["break_start"] <= when < row["break_end"]
            return None if in_break else Session(pd.Timestamp(date), row["open"], row["close"])
    return None


def _scan_from(calendar: Calendar, when: pd.Timestamp) -> Session:
    frame = calendar.sessions(when - pd.Timedelta(days=2), when + pd.Timedelta(days=60))
    later = frame[frame["close"] > when]
    return Session(pd.Timestamp(later.index[0]), later.iloc[0]["open"], later.iloc[0]["close"])


@pytest.mark.parametrize("name", ["24/7", "24/5", "XNYS", "XHKG"])
def test_cached_sessions_match_a_direct_scan(name: str) -> None:
    calendar = get_calendar(name)
    rng = random.Random(7)
    base = pd.Timestamp("2024-02-26", tz="UTC")
    stamps = [base + pd.Timedelta(minutes=rng.randrange(0, 60 * 24 * 21)) for _ in range(150)]
    stamps += [base + pd.Timedelta(days=d) for d in range(21)]
    for when in stamps * 2:  # the second pass answers from the cache
        assert session_at(calendar, when) == _scan_at(calendar, when), (name, when)
        assert session_from(calendar, when) == _scan_from(calendar, when), (name, when)


def test_24_7_sessions_are_whole_utc_days() -> None:
    cal = get_calendar("24/7")
    got = session_at(cal, "2024-03-05 13:45")
    day = pd.Timestamp("2024-03-05", tz="UTC")
    assert got == Session(day, day, day + pd.Timedelta(days=1))
    assert got is not None and got.date.unit == "ns" and session_from(cal, day) == got


def test_span_errors_are_raised_every_time() -> None:
    cal = get_calendar("XNYS")
    span = cal.known_span
    assert span is not None
    late = span[1] + pd.Timedelta(days=3)
    for _ in range(2):
        with pytest.raises(CalendarSpanError):
            session_at(cal, late)
