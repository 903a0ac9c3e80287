"""Calendars: sessions, bar grids, bins and gaps against real exchange, FX and crypto schedules."""

from __future__ import annotations

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from config.validation import load_validation_policy
from expectations import ValidationReport, validate_bars
from expectations.checks import on_grid_and_calendar
from market.calendars import (
    Calendar,
    CalendarSpanError,
    ExchangeCalendar,
    calendar_for_asset_class,
    find_gaps,
    get_calendar,
)

UTC = "UTC"


def _ts(*values: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(values, tz=UTC)


def test_xnys_daily_grid_skips_weekend_and_independence_day() -> None:
    grid = get_calendar("XNYS").bar_grid("1d", "2024-07-01", "2024-07-09")
    assert [d.strftime("%m-%d") for d in grid] == ["07-01", "07-02", "07-03", "07-05", "07-08"]
    assert grid.tz is not None and (grid == grid.normalize()).all()


def test_xnys_hourly_grid_is_anchored_at_the_open_and_honours_early_close() -> None:
    grid = get_calendar("XNYS").bar_grid("1h", "2024-07-02", "2024-07-04")
    day2 = grid[grid.normalize() == pd.Timestamp("2024-07-02", tz=UTC)]
    day3 = grid[grid.normalize() == pd.Timestamp("2024-07-03", tz=UTC)]
    assert list(day2.strftime("%H:%M")) == ["13:30", "14:30", "15:30", "16:30", "17:30", "18:30", "19:30"]
    assert list(day3.strftime("%H:%M")) == ["13:30", "14:30", "15:30", "16:30"]  # closes 13:00 New York


def test_xnys_minute_grid_has_390_bars_per_regular_session() -> None:
    grid = get_calendar("XNYS").bar_grid("1m", "2024-07-08", "2024-07-09")
    assert len(grid) == 390
    assert grid[0] == pd.Timestamp("2024-07-08 13:30", tz=UTC)
    assert grid[-1] == pd.Timestamp("2024-07-08 19:59", tz=UTC)


def test_fx_sessions_follow_new_york_daylight_saving() -> None:
    fx = get_calendar("24/5")
    sessions = fx.sessions(pd.Timestamp("2017-03-10", tz=UTC), pd.Timestamp("2017-03-14", tz=UTC))
    assert list(sessions.index.strftime("%a")) == ["Fri", "Mon", "Tue"]
    assert sessions.loc["2017-03-10", "open"] == pd.Timestamp("2017-03-09 22:00", tz=UTC)  # winter: EST
    assert sessions.loc["2017-03-13", "open"] == pd.Timestamp("2017-03-12 21:00", tz=UTC)  # summer: EDT
    week = fx.bar_grid("1h", "2017-01-01", "2017-01-08")
    assert len(week) == 120
    assert week[0] == pd.Timestamp("2017-01-01 22:00", tz=UTC) and week[-1] == pd.Timestamp(
        "2017-01-06 21:00", tz=UTC
    )


def test_crypto_trades_every_minute_of_every_day() -> None:
    grid = get_calendar("24/7").bar_grid("1m", "2024-03-02", "2024-03-04")  # a weekend
    assert len(grid) == 2 * 1440


def test_bar_bins_map_to_session_and_hour_and_nat_outside() -> None:
    xnys = get_calendar("XNYS")
    ts = _ts(
        "2024-07-02 13:30", "2024-07-02 14:29", "2024-07-02 14:30", "2024-07-02 20:00", "2024-07-06 15:00"
    )
    hours = xnys.bar_bins(ts, "1h")
    assert list(hours[:3].strftime("%H:%M")) == ["13:30", "13:30", "14:30"]
    assert hours[3] is pd.NaT and hours[4] is pd.NaT  # after the close; a Saturday
    days = get_calendar("24/5").bar_bins(
        _ts("2017-01-01 22:00", "2017-01-02 21:00", "2017-01-02 22:00"), "1d"
    )
    assert list(days.strftime("%Y-%m-%d")) == ["2017-01-02", "2017-01-02", "2017-01-03"]


def test_bars_per_year() -> None:
    xnys = get_calendar("XNYS")
    assert xnys.bars_per_year("1d") == 252
    assert xnys.bars_per_year("1h") == 252 * 7
    assert xnys.bars_per_year("1m") == 252 * 390
    assert get_calendar("24/7").bars_per_year("1m") == 365 * 1440
    assert get_calendar("24/5").bars_per_year("1h") == 260 * 24


def test_unknown_calendar_and_asset_class_say_what_works() -> None:
    with pytest.raises(ValueError, match=r"24/7.*24/5.*XNYS"):
        get_calendar("MOON")
    with pytest.raises(ValueError, match="equity"):
        calendar_for_asset_class("stamps")
    assert calendar_for_asset_class("fx") == "24/5"
    assert calendar_for_asset_class("index") == "XNYS"


def test_find_gaps_reports_missing_sessions_but_not_weekends() -> None:
    xnys = get_calendar("XNYS")
    grid = xnys.bar_grid("1d", "2024-06-03", "2024-06-29")
    present = grid.delete([5, 6, 12])  # two consecutive sessions and one more
    report = find_gaps(present, xnys, "1d")
    assert report.missing == 3 and len(report.gaps) == 2
    assert report.longest is not None and report.longest.bars == 2
    assert report.longest.start == grid[5] and report.longest.end == grid[6]
    assert report.off_calendar == 0
    weekend = present.append(_ts("2024-06-08"))
    assert find_gaps(weekend, xnys, "1d").off_calendar == 1


def test_shipped_samples_have_only_the_known_gaps() -> None:
    spx = pd.read_csv("data/samples/sp500_daily.csv")
    spx_ts = pd.DatetimeIndex(pd.to_datetime(spx["Date"], format="%m/%d/%Y")).tz_localize(UTC)
    report = find_gaps(spx_ts, get_calendar("XNYS"), "1d")
    assert (report.present, report.missing, report.off_calendar) == (5031, 0, 0)
    fx = pd.read_csv("data/samples/eurusd_hourly.csv")
    fx_ts = pd.DatetimeIndex(pd.to_datetime(fx["Time"], format="%d.%m.%Y %H:%M:%S.%f")).tz_localize(UTC)
    report = find_gaps(fx_ts, get_calendar("24/5"), "1h")
    assert report.off_calendar == 0 and report.present == 6225
    assert report.longest is not None and report.longest.start == pd.Timestamp("2017-12-25 08:00", tz=UTC)
    assert report.longest.bars == 14


# Long equity histories: MSFT listed on 1986-03-13; the XNYS calendar knows sessions from 1952-09-29
# (before that the NYSE also traded on Saturdays, which exchange-calendars does not model).
MSFT_LISTING, MSFT_END = "1986-03-13", "1990-12-31"
OUTSIDE = "outside the span the XNYS calendar knows"


def _daily_bars(ts: pd.DatetimeIndex) -> pd.DataFrame:
    """Plausible OHLCV at ``ts``: a close rising 0.1 % a bar, so no price check can fail."""
    close = 25.0 * np.exp(0.001 * np.arange(len(ts)))
    return pd.DataFrame(
        {
            "ts": ts,
            "open": close * 0.999,
            "high": close * 1.01,
            "low": close * 0.99,
            "close": close,
            "volume": 1e6,
        }
    )


def _span(calendar: Calendar) -> tuple[pd.Timestamp, pd.Timestamp]:
    span = calendar.known_span
    assert span is not None
    return span


def _validate_xnys(frame: pd.DataFrame) -> ValidationReport:
    return validate_bars(
        frame,
        symbol="MSFT",
        timeframe="1d",
        calendar=get_calendar("XNYS"),
        asset_class="equity",
        policy=load_validation_policy(),
        now=pd.Timestamp("2024-01-02", tz=UTC),
    )


def _msft_days() -> pd.DatetimeIndex:
    """XNYS sessions from the listing to 1990, straight from exchange-calendars."""
    reference = xcals.get_calendar("XNYS", start="1986-01-01", end="1991-12-31")
    return pd.DatetimeIndex(reference.sessions_in_range(MSFT_LISTING, MSFT_END)).tz_localize(UTC)


def test_a_1986_listing_is_on_session_from_its_first_bar() -> None:
    xnys = get_calendar("XNYS")
    days = pd.DatetimeIndex(
        xnys.sessions(pd.Timestamp(MSFT_LISTING, tz=UTC), pd.Timestamp(MSFT_END, tz=UTC)).index
    )
    # the calendar's own sessions are those of exchange-calendars, real 1987 dates among them
    assert days.equals(_msft_days().rename("session"))
    assert days[0] == pd.Timestamp(MSFT_LISTING, tz=UTC)
    assert {"1987-10-16", "1987-10-19", "1987-10-20"} <= set(days.strftime("%Y-%m-%d"))
    assert not {"1987-04-17", "1987-12-25", "1988-04-01"} & set(days.strftime("%Y-%m-%d"))
    assert len(days) == 1215  # 1,253 weekdays less 38 holidays
    grid, on_cal, in_span = on_grid_and_calendar(days, "1d", xnys)
    assert grid.all() and on_cal.all() and in_span.all()
    gaps = find_gaps(days, xnys, "1d")
    assert (gaps.present, gaps.missing, gaps.off_calendar) == (len(days), 0, 0)
    assert xnys.bar_grid("1d", MSFT_LISTING, "1991-01-01").equals(pd.DatetimeIndex(days, name="ts"))
    assert not xnys.outside_span(days).any()


def test_validation_quarantines_nothing_of_a_1986_listing() -> None:
    days = _msft_days()
    assert len(days) == 1215 and pd.Timestamp("1987-10-19", tz=UTC) in days
    report = _validate_xnys(_daily_bars(days))
    assert report.rows_checked == len(days)
    assert report.failures == {}, {p: report.reasons(p) for p in list(report.failures)[:5]}
    assert report.warnings == {}
    assert report.gaps.off_calendar == 0 and report.gaps.missing == 0


def test_a_bar_on_a_1980s_holiday_is_off_session() -> None:
    xnys = get_calendar("XNYS")
    week = _ts("1985-12-23", "1985-12-24", "1985-12-25", "1985-12-26", "1985-12-27")  # Christmas
    gloria = _ts("1985-09-26", "1985-09-27", "1985-09-30")  # closed for Hurricane Gloria
    _, on_cal, _ = on_grid_and_calendar(pd.DatetimeIndex(week.append(gloria)), "1d", xnys)
    assert on_cal.tolist() == [True, True, False, True, True, True, False, True]
    assert find_gaps(week, xnys, "1d").off_calendar == 1
    report = _validate_xnys(_daily_bars(week))
    assert report.failures == {2: ["ts_on_calendar"]}


def test_a_bar_before_the_known_span_is_outside_it_not_off_session() -> None:
    xnys = get_calendar("XNYS")
    first, last = _span(xnys)
    assert first == pd.Timestamp("1952-09-29", tz=UTC)
    assert last > pd.Timestamp.now(tz=UTC) + pd.Timedelta(days=300)
    early = _ts("1952-09-26", "1952-09-29", "1952-09-30")  # a Friday before the span, then inside
    assert xnys.outside_span(early).tolist() == [True, False, False]
    with pytest.raises(CalendarSpanError, match=f"{OUTSIDE}: 1952-09-26 is before 1952-09-29") as caught:
        xnys.check_span(early[0], early[-1])
    assert "leave out bars before 1952-09-29" in str(caught.value) and "Saturdays" in str(caught.value)
    assert caught.value.earliest == early[0] and caught.value.known_first == first
    grid, on_cal, in_span = on_grid_and_calendar(early, "1d", xnys)
    assert in_span.tolist() == [False, True, True] and grid.all() and on_cal.all()  # not judged off-session
    for call in (
        lambda: xnys.bar_bins(_ts("1950-01-03 15:00"), "1h"),
        lambda: xnys.bar_grid("1d", "1950-01-01", "1990-01-01"),
        lambda: xnys.sessions(pd.Timestamp("1885-01-02", tz=UTC), pd.Timestamp("1886-01-02", tz=UTC)),
        lambda: find_gaps(_ts("1950-01-03", "1990-01-02"), xnys, "1d"),
    ):
        with pytest.raises(CalendarSpanError, match=OUTSIDE):
            call()
    # validation reports those bars as outside the span, never as off the calendar
    report = _validate_xnys(_daily_bars(_ts("1950-01-03", "1950-01-04", "1986-03-13")))
    assert report.failures == {0: ["ts_in_calendar_span"], 1: ["ts_in_calendar_span"]}
    assert "outside the span of dates its calendar knows" in report.reasons(0)[0]
    # a bar inside the span but right at its start is judged normally
    assert on_grid_and_calendar(early[1:], "1d", xnys)[1].all()


def test_a_bar_after_the_known_span_is_outside_it() -> None:
    xnys = get_calendar("XNYS")
    after = _span(xnys)[1] + pd.Timedelta(days=8)
    with pytest.raises(CalendarSpanError, match=f"{OUTSIDE}: {after.date()} is after .*correct or drop"):
        xnys.bar_bins(pd.DatetimeIndex([after]), "1d")
    assert xnys.outside_span(pd.DatetimeIndex([after, pd.NaT])).tolist() == [True, False]
    assert not get_calendar("24/7").outside_span(_ts("1900-01-01", "2200-01-01")).any()


def test_an_exchange_calendar_extends_back_on_demand_and_stays_consistent() -> None:
    xnys = ExchangeCalendar("XNYS")  # a fresh one, built from 1990 on, extended when asked for earlier
    reference = xcals.get_calendar("XNYS", start="1952-09-29", end="2001-12-31")
    for lo, hi in [("2000-01-03", "2000-03-31"), ("1986-03-13", "1986-06-30"), ("1952-09-29", "1953-01-31")]:
        got = xnys.sessions(pd.Timestamp(lo, tz=UTC), pd.Timestamp(hi, tz=UTC))
        expected = reference.sessions_in_range(lo, hi).tz_localize(UTC).rename("session")
        assert pd.DatetimeIndex(got.index).equals(expected), (lo, hi)
        assert (got["open"] < got["close"]).all()
    # after extending back, later dates are unchanged
    days = xnys.bar_grid("1d", "2000-01-03", "2000-01-08")
    assert days.strftime("%m-%d").tolist() == ["01-03", "01-04", "01-05", "01-06", "01-07"]


def test_known_span_follows_the_library_bound_and_aliases() -> None:
    xtks = get_calendar("XTKS")  # exchange-calendars knows Tokyo from 1997 only
    assert _span(xtks)[0] == pd.Timestamp("1997-01-01", tz=UTC)
    assert len(xtks.bar_grid("1d", "2024-01-01", "2024-01-13")) == 6  # 10 weekdays; 01-01..03, 01-08 shut
    assert get_calendar("NASDAQ").known_span == get_calendar("XNYS").known_span
    with pytest.raises(CalendarSpanError, match="FKS has not checked the XLON sessions"):
        get_calendar("XLON").bar_grid("1d", "1985-01-01", "1985-02-01")
