"""The canonical bar frame and the timeframes FKS knows.

Every layer exchanges bars as one frame shape: a ``DatetimeIndex`` named ``ts`` (UTC, tz-aware,
the bar's open time; for ``1d`` bars the session date at 00:00 UTC) and float64 columns
``open, high, low, close, volume``, sorted by ``ts`` with unique timestamps.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


class Timeframe(StrEnum):
    """Bar length. Values are the strings used on the command line and in the database."""

    M1 = "1m"
    H1 = "1h"
    D1 = "1d"

    @classmethod
    def parse(cls, value: str | Timeframe) -> Timeframe:
        """Return the timeframe named by ``value``.

        Raises:
            ValueError: when ``value`` is not one of ``1m``, ``1h``, ``1d``; the message lists them.
        """
        if isinstance(value, Timeframe):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            known = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown timeframe {value!r}: use one of {known}") from None

    @property
    def delta(self) -> pd.Timedelta:
        """Nominal bar length (a day for ``1d``; sessions may be shorter)."""
        return pd.Timedelta({"1m": "1min", "1h": "1h", "1d": "1D"}[self.value])

    @property
    def is_intraday(self) -> bool:
        """True for bars shorter than a session (``1m``, ``1h``)."""
        return self is not Timeframe.D1


def as_utc(value: Any, what: str = "timestamp") -> pd.Timestamp:
    """``value`` as a tz-aware UTC timestamp; naive values are taken as UTC.

    Raises:
        ValueError: when ``value`` is not a timestamp or is NaT; the message names ``what``.
    """
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} {value!r} is not a timestamp: {exc}") from None
    if stamp is pd.NaT:
        raise ValueError(f"{what} must be a timestamp, not NaT")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def as_utc_index(values: Any) -> pd.DatetimeIndex:
    """``values`` as a tz-aware UTC ``DatetimeIndex``; naive values are taken as UTC (NaT stays)."""
    index = pd.DatetimeIndex(values)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def empty_bars() -> pd.DataFrame:
    """An empty canonical bar frame."""
    index = pd.DatetimeIndex([], tz="UTC", name="ts", dtype="datetime64[ns, UTC]")
    return pd.DataFrame({c: np.array([], dtype="float64") for c in BAR_COLUMNS}, index=index)


def canonical_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` as a canonical bar frame: UTC ``ts`` index, float64 OHLCV, sorted.

    Accepts ``ts`` as the index or as a column. Naive timestamps are taken as UTC.

    Raises:
        ValueError: when a column is missing or timestamps repeat; the message names them.
    """
    if "ts" in frame.columns:
        frame = frame.set_index("ts")
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"bar frame lacks column(s) {', '.join(missing)}; expected {', '.join(BAR_COLUMNS)}")
    index = as_utc_index(frame.index)
    out = pd.DataFrame(
        {c: frame[c].to_numpy(dtype="float64", copy=False) for c in BAR_COLUMNS},
        index=index.as_unit("ns").rename("ts"),
    )
    if not out.index.is_monotonic_increasing:
        out = out.sort_index(kind="stable")
    if out.index.has_duplicates:
        dup = out.index[out.index.duplicated()][0]
        raise ValueError(f"bar frame has duplicate timestamp {dup.isoformat()}; each bar must be unique")
    return out
