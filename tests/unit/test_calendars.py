"""Calendars: sessions, bar grids, bins and gaps against real exchange, FX and crypto schedules."""

from __future__ import annotations

import pandas as pd
import pytest

from market.calendars import calendar_for_asset_class, find_gaps, get_calendar

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
