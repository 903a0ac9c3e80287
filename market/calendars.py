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

Known span: an exchange calendar can judge only the dates between its :attr:`Calendar.known_span`
bounds; ``24/7`` and ``24/5`` have none. Asking an exchange calendar about a time outside its span
(:meth:`Calendar.sessions`, :meth:`~Calendar.bar_grid`, :meth:`~Calendar.bar_bins`,
:func:`find_gaps`, and so bar validation) raises :class:`CalendarSpanError`, never answers
"off session". The span starts at:

* the date in ``_KNOWN_FROM`` for exchanges whose history FKS has checked: XNYS (and its aliases
  NYSE, NASDAQ, XNAS, ...) from 1952-09-29. exchange-calendars sets no lower bound for XNYS and
  would build sessions back to 1678, but it models a Monday-Friday week, while the NYSE also
  traded on Saturdays until its five-day week began on 1952-09-29;
* else the exchange's ``bound_min`` in exchange-calendars, where it declares one (XTKS 1997, XHKG
  1960, ...);
* else 1990-01-01, the span FKS has always used.

It ends 7 days before the library's default end (about a year ahead, or its ``bound_max``): the
exchange has announced no sessions further out. An exchange calendar is first built from
1990-01-01 (or its known start, if later) and extended back by whole decades, once, when data
ask for earlier dates: a 1986 listing builds XNYS from 1980 on, and later calls reuse it.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from market.bars import Timeframe, as_utc, as_utc_index

if TYPE_CHECKING:
    import exchange_calendars as xcals

_NS_PER_DAY = 86_400 * 10**9
_SESSIONS_PER_YEAR = {"24/7": 365.0, "24/5": 260.0}
_EXCHANGE_SESSIONS_PER_YEAR = 252.0
# An exchange calendar is built from here (or its known start, if later) until data ask for more.
_EXCHANGE_FIRST_BUILD = pd.Timestamp("1990-01-01")
# Known start of exchanges whose history FKS has not checked and that declare no ``bound_min``.
_UNCHECKED_KNOWN_FROM = pd.Timestamp("1990-01-01")
# Canonical exchange-calendars name -> (first date its sessions are right, why not earlier).
_KNOWN_FROM: dict[str, tuple[str, str]] = {
    "XNYS": (
        "1952-09-29",
        "exchange-calendars models a Monday-Friday week, but the NYSE also traded on Saturdays "
        "until its five-day week began on 1952-09-29",
    ),
}
# The known span stops this long before the library's last built date, so that a session of a
# date inside the span that opens the evening before (UTC) is always built.
_FUTURE_MARGIN = pd.Timedelta(days=7)


class CalendarSpanError(ValueError):
    """A time outside the span of dates a calendar can judge (see :attr:`Calendar.known_span`).

    Such a time is neither on nor off a session: nothing is known about it.

    Attributes:
        calendar: the calendar's name.
        known_first: first session date the calendar knows (00:00 UTC).
        known_last: last session date the calendar knows (00:00 UTC).
        earliest: earliest time asked about.
        latest: latest time asked about.
    """

    def __init__(
        self,
        calendar: str,
        known_first: pd.Timestamp,
        known_last: pd.Timestamp,
        earliest: pd.Timestamp,
        latest: pd.Timestamp,
        note: str = "",
    ) -> None:
        self.calendar = calendar
        self.known_first = known_first
        self.known_last = known_last
        self.earliest = earliest
        self.latest = latest
        first, last = known_first.date().isoformat(), known_last.date().isoformat()
        problems: list[str] = []
        fixes: list[str] = []
        if earliest < known_first:
            problems.append(f"{_when(earliest)} is before {first}, the first date it knows")
            fixes.append(
                f"leave out bars before {first} (ingest or backfill from {first} on), "
                "or check the timestamps if the series should not reach back that far"
            )
        if latest >= known_last + pd.Timedelta(days=1):
            problems.append(f"{_when(latest)} is after {last}, the last date it knows")
            fixes.append(
                f"correct or drop bars after {last} (the exchange has announced no sessions "
                "that far ahead, so such a timestamp is wrong)"
            )
        why = f"; {note}" if note else ""
        super().__init__(
            f"outside the span the {calendar} calendar knows: {'; '.join(problems)} "
            f"(it knows sessions from {first} to {last}{why}). To fix: {'; '.join(fixes)}"
        )


def _when(stamp: pd.Timestamp) -> str:
    """A time for messages: the date alone for the start or end of a day, else date and time (UTC)."""
    day_end = stamp + pd.Timedelta(nanoseconds=1)  # the last instant of an exclusive range's day
    if stamp == stamp.normalize() or day_end == day_end.normalize():
        return stamp.date().isoformat()
    return f"{stamp:%Y-%m-%d %H:%M} UTC"


class Calendar(ABC):
    """Sessions of one market and the bar grid they imply. Subclasses supply :meth:`sessions`."""

    name: str

    @abstractmethod
    def sessions(self, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """Sessions whose date lies in ``[first.date(), last.date()]``.

        Returns a frame indexed by ``session`` (the session date at 00:00 UTC) with tz-aware UTC
        columns ``open``, ``close``, ``break_start``, ``break_end`` (the last two NaT when the
        session has no break). A calendar with a :attr:`known_span` raises
        :class:`CalendarSpanError` for dates outside it.
        """

    @property
    @abstractmethod
    def sessions_per_year(self) -> float:
        """Nominal number of sessions in a year, used for annualisation."""

    @property
    def known_span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last session dates (00:00 UTC) this calendar can judge; None when unbounded.

        A time ``t`` is inside the span when ``first <= t < last + 1 day``.
        """
        return None

    def _span_note(self) -> str:
        """Why the known span starts where it does, for :class:`CalendarSpanError` messages."""
        return ""

    def outside_span(self, ts: pd.DatetimeIndex) -> np.ndarray:
        """True for each timestamp outside :attr:`known_span` (NaT is inside)."""
        ts = pd.DatetimeIndex(ts)
        span = self.known_span
        if span is None or len(ts) == 0:
            return np.zeros(len(ts), dtype=bool)
        ts = as_utc_index(ts)
        present = ~np.asarray(ts.isna())
        values = ts.as_unit("ns").asi8
        lo, hi = span[0].as_unit("ns").value, (span[1] + pd.Timedelta(days=1)).as_unit("ns").value
        return present & ((values < lo) | (values >= hi))

    def check_span(self, first: pd.Timestamp | str, last: pd.Timestamp | str) -> None:
        """Make sure the times ``first`` to ``last`` (inclusive) lie inside :attr:`known_span`.

        Raises:
            CalendarSpanError: when either lies outside; the message says which and how to fix
                the input.
        """
        span = self.known_span
        if span is None:
            return
        lo, hi = as_utc(first), as_utc(last)
        if lo < span[0] or hi >= span[1] + pd.Timedelta(days=1):
            raise CalendarSpanError(self.name, span[0], span[1], lo, hi, self._span_note())

    def _sessions_around(self, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        # A session may open the evening before its date (FX), so look one day either side; the
        # times asked about were checked against the known span, the padding is kept inside it.
        first = as_utc(lo).normalize() - pd.Timedelta(days=2)
        last = as_utc(hi).normalize() + pd.Timedelta(days=2)
        span = self.known_span
        if span is not None:
            first, last = max(first, span[0]), min(last, span[1])
        return self.sessions(first, last)

    def bar_grid(
        self, timeframe: Timeframe | str, start: pd.Timestamp | str, end: pd.Timestamp | str
    ) -> pd.DatetimeIndex:
        """Open times of every bar this calendar expects with ``start <= ts < end`` (UTC).

        Raises:
            CalendarSpanError: when ``[start, end)`` reaches outside :attr:`known_span`.
        """
        tf = Timeframe.parse(timeframe)
        start_utc, end_utc = as_utc(start), as_utc(end)
        if end_utc <= start_utc:
            return pd.DatetimeIndex([], tz="UTC", name="ts").as_unit("ns")
        self.check_span(start_utc, end_utc - pd.Timedelta(nanoseconds=1))
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

        Raises:
            CalendarSpanError: when a timestamp lies outside :attr:`known_span`.
        """
        tf = Timeframe.parse(timeframe)
        ts = pd.DatetimeIndex(ts)
        ts = as_utc_index(ts)
        if len(ts) == 0 or bool(ts.isna().all()):
            return pd.DatetimeIndex([pd.NaT] * len(ts), tz="UTC", name="ts").as_unit("ns")
        self.check_span(ts.min(), ts.max())
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
        probe_start = probe_end - pd.Timedelta(days=365)
        span = self.known_span
        if span is not None and not span[0] <= probe_start < probe_end <= span[1]:
            probe_end = span[1]  # an exchange known only after 2019: its latest year
            probe_start = max(span[0], probe_end - pd.Timedelta(days=365))
        probe = self.sessions(probe_start, probe_end)
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
    """An exchange's regular sessions, from the ``exchange-calendars`` package.

    The library calendar is built lazily over the dates asked about: first from 1990-01-01 (or
    the known start, if later), then extended back by whole decades, never past the known start.
    An extension rebuilds it once; later calls over the same dates reuse it.
    """

    def __init__(self, name: str) -> None:
        import exchange_calendars as xcals

        self.name = name
        self._canonical = xcals.resolve_alias(name)
        cls = _exchange_calendar_class(self._canonical)
        bound_min = cls.bound_min()
        checked = _KNOWN_FROM.get(self._canonical)
        if checked is not None:
            first, self._note = pd.Timestamp(checked[0]), checked[1]
        elif bound_min is not None:
            first = pd.Timestamp(bound_min)
            self._note = f"exchange-calendars knows {self._canonical} from {first.date()}"
        else:
            first = _UNCHECKED_KNOWN_FROM
            self._note = (
                f"FKS has not checked the {self._canonical} sessions of exchange-calendars before "
                f"{first.date()}"
            )
        if bound_min is not None:
            first = max(first, pd.Timestamp(bound_min))
        self._build_end = pd.Timestamp(cls.default_end()).tz_localize(None).normalize()
        self._known = (
            first.tz_localize("UTC"),
            (self._build_end - _FUTURE_MARGIN).tz_localize("UTC"),
        )
        self._lock = threading.Lock()
        self._built_from = max(first, _EXCHANGE_FIRST_BUILD)
        self._cal = self._build(self._built_from)

    @property
    def sessions_per_year(self) -> float:
        """252 sessions a year, the equity-market convention."""
        return _EXCHANGE_SESSIONS_PER_YEAR

    @property
    def known_span(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last session dates (00:00 UTC) the exchange calendar can judge."""
        return self._known

    def _span_note(self) -> str:
        return self._note

    def _build(self, start: pd.Timestamp) -> xcals.ExchangeCalendar:
        import exchange_calendars as xcals

        return xcals.get_calendar(self._canonical, start=start, end=self._build_end)

    def _calendar_from(self, lo: pd.Timestamp) -> xcals.ExchangeCalendar:
        """The library calendar, extended back so that it holds the sessions from date ``lo``."""
        if lo >= self._built_from:
            return self._cal
        with self._lock:
            if lo < self._built_from:
                decade = pd.Timestamp(year=lo.year - lo.year % 10, month=1, day=1)
                start = max(decade, self._known[0].tz_localize(None))
                self._cal = self._build(start)
                self._built_from = start
            return self._cal

    def sessions(self, first: pd.Timestamp, last: pd.Timestamp) -> pd.DataFrame:
        """The exchange's sessions with dates from ``first`` to ``last``.

        Raises:
            CalendarSpanError: when a date lies outside :attr:`known_span`; the message gives
                the span and how to fix the input.
        """
        first_day, last_day = as_utc(first).normalize(), as_utc(last).normalize()
        self.check_span(first_day, last_day)
        return self._schedule(first_day, last_day)

    def _sessions_around(self, lo: pd.Timestamp, hi: pd.Timestamp) -> pd.DataFrame:
        # The times were checked against the known span; the padding may use the sessions built
        # beyond its end (a session of the span's last date may open the evening before, UTC).
        first = max(as_utc(lo).normalize() - pd.Timedelta(days=2), self._known[0])
        last = min(as_utc(hi).normalize() + pd.Timedelta(days=2), self._build_end.tz_localize("UTC"))
        return self._schedule(first, last)

    def _schedule(self, first_day: pd.Timestamp, last_day: pd.Timestamp) -> pd.DataFrame:
        lo, hi = first_day.tz_localize(None), last_day.tz_localize(None)
        part = self._calendar_from(lo).schedule.loc[lo:hi]
        days = pd.DatetimeIndex(part.index).tz_localize("UTC").as_unit("ns").rename("session")
        frame = _session_frame(days, pd.DatetimeIndex(part["open"]), pd.DatetimeIndex(part["close"]))
        frame["break_start"] = pd.DatetimeIndex(part["break_start"]).as_unit("ns")
        frame["break_end"] = pd.DatetimeIndex(part["break_end"]).as_unit("ns")
        return frame


def _exchange_calendar_class(name: str) -> type[xcals.ExchangeCalendar]:
    """The exchange-calendars class of canonical ``name``, to read its bounds before building."""
    import exchange_calendars as xcals

    factories = getattr(xcals.calendar_utils.global_calendar_dispatcher, "_calendar_factories", None)
    factory = factories.get(name) if isinstance(factories, dict) else None
    if isinstance(factory, type) and issubclass(factory, xcals.ExchangeCalendar):
        return factory
    return type(xcals.get_calendar(name))  # a registered instance: its class has the bounds


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
    ts = as_utc_index(ts)
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
