"""Resampling 1m -> 1h -> 1d on calendars, checked against an independent per-bin computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from market.bars import canonical_bars
from market.calendars import get_calendar
from market.resample import resample_bars


def _walk(index: pd.DatetimeIndex, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, len(index))))
    open_ = np.concatenate(([100.0], close[:-1]))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 1e-3, len(index)))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 1e-3, len(index)))
    volume = rng.integers(1, 1000, len(index)).astype(float)
    return canonical_bars(
        pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)
    )


def _reference(bars: pd.DataFrame, keys: list[pd.Timestamp]) -> pd.DataFrame:
    """Aggregate bin by bin with plain pandas, bins given explicitly per bar."""
    grouped = bars.assign(key=keys).groupby("key", sort=True)
    ref = pd.DataFrame(
        {
            "open": grouped["open"].first(),
            "high": grouped["high"].max(),
            "low": grouped["low"].min(),
            "close": grouped["close"].last(),
            "volume": grouped["volume"].sum(),
        }
    )
    ref.index = pd.DatetimeIndex(ref.index, name="ts")
    return ref


def test_xnys_minutes_to_hours_anchor_at_open_and_match_reference() -> None:
    xnys = get_calendar("XNYS")
    minutes = _walk(xnys.bar_grid("1m", "2024-07-01", "2024-07-06"))
    hours = resample_bars(minutes, "1h", xnys)
    ny = minutes.index.tz_convert("America/New_York")
    session_open = ny.normalize() + pd.Timedelta(hours=9, minutes=30)
    keys = [
        (o + pd.Timedelta(hours=int((t - o) / pd.Timedelta("1h")))).tz_convert("UTC")
        for t, o in zip(ny, session_open, strict=True)
    ]
    pd.testing.assert_frame_equal(hours, _reference(minutes, keys), check_freq=False)
    assert len(hours) == 7 * 3 + 4  # three full sessions and the 3 July early close; 4 July is a holiday
    assert hours.loc["2024-07-03", "volume"].sum() == minutes.loc["2024-07-03", "volume"].sum()


def test_minutes_to_days_equals_minutes_to_hours_to_days() -> None:
    xnys = get_calendar("XNYS")
    minutes = _walk(xnys.bar_grid("1m", "2024-07-01", "2024-07-13"), seed=5)
    direct = resample_bars(minutes, "1d", xnys)
    via_hours = resample_bars(resample_bars(minutes, "1h", xnys), "1d", xnys)
    pd.testing.assert_frame_equal(direct, via_hours)
    assert list(direct.index.strftime("%m-%d")) == [
        "07-01",
        "07-02",
        "07-03",
        "07-05",
        "07-08",
        "07-09",
        "07-10",
        "07-11",
        "07-12",
    ]
    first_day = minutes.loc["2024-07-01"]
    assert direct.iloc[0]["open"] == first_day["open"].iloc[0]
    assert direct.iloc[0]["close"] == first_day["close"].iloc[-1]
    assert direct.iloc[0]["high"] == first_day["high"].max()


def test_fx_day_runs_from_17h_to_17h_new_york_on_the_real_sample() -> None:
    raw = pd.read_csv("data/samples/eurusd_hourly.csv")
    raw.index = pd.DatetimeIndex(pd.to_datetime(raw.pop("Time"), format="%d.%m.%Y %H:%M:%S.%f")).tz_localize(
        "UTC"
    )
    bars = canonical_bars(raw.rename(columns=str.lower))
    days = resample_bars(bars, "1d", get_calendar("24/5"))
    ny = bars.index.tz_convert("America/New_York")
    keys = list((ny + pd.Timedelta(hours=7)).tz_localize(None).normalize().tz_localize("UTC"))
    pd.testing.assert_frame_equal(days, _reference(bars, keys), check_freq=False)
    assert days.index[0] == pd.Timestamp("2017-01-02", tz="UTC")
    assert days.iloc[0]["open"] == bars.iloc[0]["open"]  # Sunday 22:00 UTC opens Monday's session
    assert (days.index.day_of_week < 5).all()


def test_crypto_days_are_utc_days() -> None:
    crypto = get_calendar("24/7")
    minutes = _walk(crypto.bar_grid("1m", "2024-03-01", "2024-03-04"))
    days = resample_bars(minutes, "1d", crypto)
    assert len(days) == 3 and days["volume"].sum() == minutes["volume"].sum()


def test_bars_off_the_calendar_and_upsampling_are_refused() -> None:
    xnys = get_calendar("XNYS")
    saturday = _walk(pd.DatetimeIndex(["2024-07-06 15:00", "2024-07-06 15:01"], tz="UTC"))
    with pytest.raises(ValueError, match="outside the sessions of calendar XNYS"):
        resample_bars(saturday, "1h", xnys)
    hours = resample_bars(_walk(xnys.bar_grid("1m", "2024-07-01", "2024-07-02")), "1h", xnys)
    with pytest.raises(ValueError, match="finer timeframe 1m"):
        resample_bars(hours, "1m", xnys)
