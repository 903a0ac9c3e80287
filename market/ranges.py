"""Time-range arithmetic on half-open UTC ranges ``[start, end)``: clip, subtract, and the latest
end whose bars have all closed.

Pure functions over :class:`pandas.Timestamp` pairs; the store's gap finding builds on them
(:mod:`storage.gaps`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from market.bars import Timeframe, as_utc

Range = tuple[pd.Timestamp, pd.Timestamp]
"""A half-open range ``[start, end)`` of UTC timestamps."""


def clip_ranges(ranges: Iterable[Range], start: pd.Timestamp | None, end: pd.Timestamp | None) -> list[Range]:
    """``ranges`` cut to ``[start, end)`` (None: unbounded on that side); empty pieces are dropped."""
    out = []
    for lo, hi in ranges:
        lo = max(lo, start) if start is not None else lo
        hi = min(hi, end) if end is not None else hi
        if hi > lo:
            out.append((lo, hi))
    return out


def subtract_ranges(ranges: Iterable[Range], covered: Sequence[Range]) -> list[Range]:
    """The parts of ``ranges`` that no range of ``covered`` contains (all ``[start, end)``)."""
    out: list[Range] = []
    for lo, hi in ranges:
        pieces = [(lo, hi)]
        for c_lo, c_hi in covered:
            nxt: list[Range] = []
            for p_lo, p_hi in pieces:
                if c_hi <= p_lo or c_lo >= p_hi:
                    nxt.append((p_lo, p_hi))
                    continue
                if p_lo < c_lo:
                    nxt.append((p_lo, c_lo))
                if c_hi < p_hi:
                    nxt.append((c_hi, p_hi))
            pieces = nxt
        out.extend(pieces)
    return out


def closed_until(timeframe: str, now: pd.Timestamp | None = None) -> pd.Timestamp:
    """The latest end a fetch may ask for: every bar that opens before it has closed by ``now``
    (default: the current time, UTC).

    A bar opening at ``ts`` has closed when ``ts + one bar <= now`` (a day bar of any calendar
    closes within a day of its date), so the end is the minute after ``now - one bar`` floored.

    Raises:
        ValueError: for an unknown timeframe.
    """
    current = pd.Timestamp.now(tz="UTC") if now is None else as_utc(now)
    return (current - Timeframe.parse(timeframe).delta).floor("min") + pd.Timedelta(minutes=1)
