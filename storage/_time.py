"""Timestamps as the store keeps them: BIGINT epoch milliseconds, UTC."""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd

from market.bars import as_utc

NS_PER_MS = 1_000_000


def now_ms() -> int:
    """The current time in epoch milliseconds."""
    return time.time_ns() // NS_PER_MS


def utc(value: pd.Timestamp | dt.datetime | str, what: str = "timestamp") -> pd.Timestamp:
    """``value`` as a UTC timestamp; naive values are taken as UTC (see :func:`market.bars.as_utc`).

    Raises:
        ValueError: when ``value`` is not a timestamp or is NaT; the message names ``what``.
    """
    return as_utc(value, what)


def to_ms(value: pd.Timestamp | dt.datetime | str, what: str = "timestamp") -> int:
    """Epoch milliseconds (floored) of ``value``. Raises ValueError as :func:`utc` does."""
    return int(utc(value, what).as_unit("ns").value // NS_PER_MS)


def optional_ms(value: pd.Timestamp | dt.datetime | str | None) -> int | None:
    """Epoch milliseconds of ``value``, or None for None and NaT."""
    if value is None or pd.Timestamp(value) is pd.NaT:
        return None
    return to_ms(value)


def from_ms(ms: int) -> pd.Timestamp:
    """The UTC timestamp of epoch milliseconds ``ms``."""
    return pd.Timestamp(int(ms) * NS_PER_MS, tz="UTC")


def optional_ts(ms: int | None) -> pd.Timestamp | None:
    """:func:`from_ms`, passing None through."""
    return None if ms is None else from_ms(ms)
