"""What the store lacks: holes of stored series against their calendars, and the series to mend.

Read-only queries on the caller's connection; the range arithmetic is :mod:`market.ranges`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from sqlalchemy import Connection

from config.assets import AssetSpec
from market.bars import Timeframe
from market.calendars import Calendar, find_gaps, get_calendar
from market.ranges import Range
from storage.backfill import list_chunks
from storage.bars import bar_gaps, bar_summary, read_bars


def gap_ranges(conn: Connection, asset: AssetSpec, timeframe: str) -> list[tuple[Range, int]]:
    """Holes of the stored series against its calendar: ``([first missing, last missing + 1 bar),
    bars missing)`` for each gap between its first and last stored bar.

    Raises:
        ValueError: for an unknown timeframe or calendar.
    """
    step = Timeframe.parse(timeframe).delta
    report = bar_gaps(conn, asset.symbol, timeframe, get_calendar(asset.calendar))
    return [((g.start, g.end + step), g.bars) for g in report.gaps]


def missing_bars(
    conn: Connection,
    symbol: str,
    timeframe: str,
    calendar: Calendar,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> int:
    """How many bars ``calendar`` expects in ``[start, end)`` that the store lacks."""
    stored = read_bars(conn, symbol, timeframe, start, end).index
    return find_gaps(pd.DatetimeIndex(stored), calendar, timeframe, start, end).missing


def series_to_mend(conn: Connection, symbols: Sequence[str], timeframe: str | None) -> list[tuple[str, str]]:
    """Stored series and series with failed backfill chunks, as sorted ``(symbol, timeframe)``
    pairs, filtered by ``symbols`` (none: all) and ``timeframe`` (None: all)."""
    summary = bar_summary(conn)
    series = {(str(s), str(tf)) for s, tf in zip(summary["symbol"], summary["timeframe"], strict=True)}
    series |= {(c.symbol, c.timeframe) for c in list_chunks(conn, status="failed")}
    wanted = set(symbols)
    return sorted(
        (s, tf) for s, tf in series if (not wanted or s in wanted) and (timeframe is None or tf == timeframe)
    )
