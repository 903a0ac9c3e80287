"""Trading calendars: when an asset trades, the bar grid that follows, and gaps against it.

Three kinds, chosen by name with :func:`get_calendar`:

* ``24/7`` (crypto): every UTC day is a session, ``00:00``-``24:00`` UTC.
* ``24/5`` (FX): five sessions a week, each from 17:00 New York time on the previous day to
  17:00 New York time on the session's date (the FX "roll"), so a week opens Sunday 17:00 and
  closes Friday 17:00 New York time, following US daylight saving time.
* any `exchange-calendars <https://github.com/gerrymanoim/exchange_calendars>`_ name (``XNYS``,
  ``XLON``, ...): that exchange's regular sessions with holidays, early closes and breaks.

Grid conventions: a ``1d`` bar's timestamp is the session date at 00:00 UTC. Intraday bars are
anchored at the session open (``1h`` bars of XNYS open at 09:30, 10:30, ..., 15:30 New York
time; the last may be shorter); bars inside a lunch break are not on the grid.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd

from market.bars import Timeframe, as_utc

_NS_PER_DAY = 86_400 * 10**9
_SESSIONS_PER_YEAR = {"24/7": 365.0, "24/5": 260.0}
_EXCHANGE_SESSIONS_PER_YEAR = 252.0
_EXCHANGE_FIRST_SESSION = "1990-01-01"


class Calendar(ABC):
    """Sessions of one market and the bar grid they imply. Subclasses supply :meth:`sessions`."""

    name: str

    @abstractmethod
    def sessions(self, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """Sessions whose date lies in ``[first.date(), last.date()]``.

        Returns a frame indexed by ``session`` (the session date at 00:00 UTC) with tz-aware UTC
        columns ``open``, ``close``, ``break_start``, ``break_end`` (the last two NaT when the
        session has no break).
        """

    @property
    @abstractmethod
    def sessions_per_year(self) -> float:
        """Nominal number of sessions in a year, used for annualisation."""

    def _sessions_around(self, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        # A session may open the evening before its date (FX), so look one day either side.
        return self.sessions(
            as_utc(lo).normalize() - pd.Timedelta(days=2), as_utc(hi).normalize() + pd.Timedelta(days=2)
        )

    def bar_grid(
        self, timeframe: Timeframe | str, start: pd.Timestamp | str, end: pd.Timestamp | str
    ) -> pd.DatetimeIndex:
        """Open times of every bar this calendar expects with ``start <= ts < end`` (UTC)."""
        tf = Timeframe.parse(timeframe)
        start_utc, end_utc = as_utc(start), as_utc(end)
        if end_utc <= start_utc:
            return pd.DatetimeIndex([], tz="UTC", name="ts").as_unit("ns")
        sessions = self._sessions_around(start_utc, end_utc)
        grid = pd.DatetimeIndex(sessions.index) if tf is Timeframe.D1 else self._intraday_grid(sessions, tf)
        grid = grid[(grid >= start_utc) & (grid < end_utc)]
        return pd.DatetimeIndex(grid, name="ts").as_unit("ns")

    @staticmethod
    def _intraday_grid(sessions: pd.DataFrame, tf: Timeframe) -> pd.DatetimeIndex:
        step = tf.delta.value
        opens = sessions["open"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        closes = sessions["close"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        counts = -(-(closes - opens) // step)  # ceil: a short last bar still counts
        counts = np.maximum(counts, 0)
        total = int(counts.sum())
        starts = np.repeat(opens, counts)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        values = starts + within * step
        breaks_start = sessions["break_start"].to_numpy(dtype="datetime64[ns]")
        if not np.isnat(breaks_start).all():
            bs = np.repeat(breaks_start.astype(np.int64), counts)
            be = np.repeat(sessions["break_end"].to_numpy(dtype="datetime64[ns]").astype(np.int64), counts)
            has_break = np.repeat(~np.isnat(breaks_start), counts)
            in_break = has_break & (values >= bs) & (values < be)
            values = values[~in_break]
        return pd.DatetimeIndex(values.astype("datetime64[ns]")).tz_localize("UTC")

    def bar_bins(self, ts: pd.DatetimeIndex, timeframe: Timeframe | str) -> pd.DatetimeIndex:
        """For each timestamp, the open time of the ``timeframe`` bar that contains it.

        For ``1d`` that is the session date; timestamps outside every session map to ``NaT``.
        """
        tf = Timeframe.parse(timeframe)
        ts = pd.DatetimeIndex(ts)
        ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
        if len(ts) == 0:
            return pd.DatetimeIndex([], tz="UTC", name="ts").as_unit("ns")
        sessions = self._sessions_around(ts.min(), ts.max())
        values = ts.as_unit("ns").asi8
        opens = sessions["open"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        closes = sessions["close"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        idx = np.searchsorted(opens, values, side="right") - 1
        safe = np.clip(idx, 0, None)
        inside = (idx >= 0) & (values < closes[safe])
        bs = sessions["break_start"].to_numpy(dtype="datetime64[ns]")
        if not np.isnat(bs).all():
            be = sessions["break_end"].to_numpy(dtype="datetime64[ns]")
            has = ~np.isnat(bs[safe])
            inside &= ~(has & (values >= bs[safe].astype(np.int64)) & (values < be[safe].astype(np.int64)))
        if tf is Timeframe.D1:
            out = pd.DatetimeIndex(sessions.index).as_unit("ns").asi8[safe]
        else:
            out = opens[safe] + ((values - opens[safe]) // tf.delta.value) * tf.delta.value
        result = pd.DatetimeIndex(out.astype("datetime64[ns]")).tz_localize("UTC")
        return pd.DatetimeIndex(result.where(inside), name="ts")

    def bars_per_year(self, timeframe: Timeframe | str) -> float:
        """Nominal number of ``timeframe`` bars in a year (regular sessions), for annualisation."""
        tf = Timeframe.parse(timeframe)
        if tf is Timeframe.D1:
            return self.sessions_per_year
        return self.sessions_per_year * self._regular_bars_per_session(tf)

    def _regular_bars_per_session(self, tf: Timeframe) -> float:
        probe_end = pd.Timestamp("2019-12-31", tz="UTC")
        probe = self.sessions(probe_end - pd.Timedelta(days=365), probe_end)
        grid = self._intraday_grid(probe, tf)
        return float(
            np.median(
                np.bincount(
                    np.searchsorted(
                        probe["open"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
                        grid.asi8,
                        side="right",
                    )
                    - 1
                )
            )
        )


class AlwaysOpenCalendar(Calendar):
    """Crypto: a session every UTC day."""

    name = "24/7"

    @property
    def sessions_per_year(self) -> float:
        """365 sessions a year."""
        return _SESSIONS_PER_YEAR["24/7"]

    def sessions(self, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """Every UTC date from ``first`` to ``last``."""
        days = pd.date_range(
            as_utc(first).normalize(), as_utc(last).normalize(), freq="D", name="session"
        ).as_unit("ns")
        return _session_frame(days, days, days + pd.Timedelta(days=1))


class ForexCalendar(Calendar):
    """FX 24/5: sessions Monday-Friday, each 17:00 New York on the previous day to 17:00 New York."""

    name = "24/5"

    @property
    def sessions_per_year(self) -> float:
        """260 sessions a year (52 weeks of 5)."""
        return _SESSIONS_PER_YEAR["24/5"]

    def sessions(self, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """Every weekday from ``first`` to ``last``."""
        days = pd.date_range(
            as_utc(first).normalize(), as_utc(last).normalize(), freq="D", name="session"
        ).as_unit("ns")
        days = days[days.day_of_week < 5]
        naive = days.tz_localize(None)
        closes = (naive + pd.Timedelta(hours=17)).tz_localize("America/New_York").tz_convert("UTC")
        opens = (naive - pd.Timedelta(hours=7)).tz_localize("America/New_York").tz_convert("UTC")
        return _session_frame(days, opens, closes)


class ExchangeCalendar(Calendar):
    """An exchange's regular sessions, from the ``exchange-calendars`` package."""

    def __init__(self, name: str) -> None:
        import exchange_calendars as xcals

        self.name = name
        self._cal = xcals.get_calendar(name, start=_EXCHANGE_FIRST_SESSION)

    @property
    def sessions_per_year(self) -> float:
        """252 sessions a year, the equity-market convention."""
        return _EXCHANGE_SESSIONS_PER_YEAR

    def sessions(self, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """The exchange's sessions with dates from ``first`` to ``last``.

        Raises:
            ValueError: when the range starts before the calendar's first session.
        """
        schedule = self._cal.schedule
        lo = as_utc(first).tz_localize(None).normalize()
        hi = as_utc(last).tz_localize(None).normalize()
        first_session = pd.Timestamp(self._cal.first_session).tz_localize(None)
        if hi < first_session:
            raise ValueError(f"calendar {self.name} starts on {first_session.date()}; no sessions before it")
        part = schedule.loc[lo:hi]
        days = pd.DatetimeIndex(part.index).tz_localize("UTC").as_unit("ns").rename("session")
        frame = _session_frame(days, pd.DatetimeIndex(part["open"]), pd.DatetimeIndex(part["close"]))
        frame["break_start"] = pd.DatetimeIndex(part["break_start"]).as_unit("ns")
        frame["break_end"] = pd.DatetimeIndex(part["break_end"]).as_unit("ns")
        return frame


def _session_frame(days: pd.DatetimeIndex, opens: pd.DatetimeIndex, closes: pd.DatetimeIndex) -> pd.DataFrame:
    nat = pd.DatetimeIndex([pd.NaT] * len(days), tz="UTC").as_unit("ns")
    return pd.DataFrame(
        {
            "open": pd.DatetimeIndex(opens).as_unit("ns").tz_convert("UTC"),
            "close": pd.DatetimeIndex(closes).as_unit("ns").tz_convert("UTC"),
            "break_start": nat,
            "break_end": nat,
        },
        index=pd.DatetimeIndex(days, name="session"),
    )


@lru_cache(maxsize=32)
def get_calendar(name: str) -> Calendar:
    """The calendar called ``name``: ``24/7``, ``24/5`` or an exchange-calendars name such as ``XNYS``.

    Raises:
        ValueError: for an unknown name; the message says which names work.
    """
    key = name.strip()
    if key == "24/7":
        return AlwaysOpenCalendar()
    if key == "24/5":
        return ForexCalendar()
    import exchange_calendars as xcals

    if key.upper() not in xcals.get_calendar_names(include_aliases=True):
        raise ValueError(
            f"unknown calendar {name!r}: use 24/7 (crypto), 24/5 (FX) "
            "or an exchange-calendars name such as XNYS"
        )
    return ExchangeCalendar(key.upper())


def calendar_for_asset_class(asset_class: str) -> str:
    """The default calendar name of an asset class (``equity``, ``etf``, ``index``, ``fx``, ``crypto``)."""
    from config.assets import DEFAULT_CALENDARS, AssetClass

    try:
        return DEFAULT_CALENDARS[AssetClass(asset_class)]
    except ValueError:
        known = ", ".join(a.value for a in AssetClass)
        raise ValueError(f"unknown asset class {asset_class!r}: use one of {known}") from None


@dataclass(frozen=True)
class Gap:
    """A run of consecutive expected bars that are missing: ``start`` to ``end`` inclusive."""

    start: pd.Timestamp
    end: pd.Timestamp
    bars: int


@dataclass(frozen=True)
class GapReport:
    """Missing and off-calendar bars of a series, compared with its calendar's grid."""

    expected: int
    present: int
    missing: int
    off_calendar: int
    gaps: list[Gap] = field(default_factory=list)

    @property
    def longest(self) -> Gap | None:
        """The gap with the most missing bars, or None."""
        return max(self.gaps, key=lambda g: g.bars) if self.gaps else None


def find_gaps(
    ts: pd.DatetimeIndex,
    calendar: Calendar,
    timeframe: Timeframe | str,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> GapReport:
    """Compare bar timestamps with the calendar's grid between ``start`` and ``end``.

    By default the span is the series' own first to last bar, so leading and trailing absence is
    not a gap. Weekends, holidays and (for FX) the weekly close are not on the grid, so they are
    never gaps.
    """
    tf = Timeframe.parse(timeframe)
    ts = pd.DatetimeIndex(ts)
    if len(ts) == 0 and (start is None or end is None):
        return GapReport(expected=0, present=0, missing=0, off_calendar=0)
    ts = ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")
    lo = as_utc(start) if start is not None else ts.min()
    hi = as_utc(end) if end is not None else ts.max() + pd.Timedelta(nanoseconds=1)
    grid = calendar.bar_grid(tf, lo, hi)
    inside = ts[(ts >= lo) & (ts < hi)]
    present = np.isin(grid.asi8, inside.as_unit("ns").asi8)
    off = int((~np.isin(inside.as_unit("ns").asi8, grid.asi8)).sum())
    missing_pos = np.flatnonzero(~present)
    gaps: list[Gap] = []
    if len(missing_pos):
        breaks = np.flatnonzero(np.diff(missing_pos) != 1) + 1
        for run in np.split(missing_pos, breaks):
            gaps.append(Gap(start=grid[run[0]], end=grid[run[-1]], bars=len(run)))
    return GapReport(
        expected=len(grid), present=int(present.sum()), missing=len(missing_pos), off_calendar=off, gaps=gaps
    )
