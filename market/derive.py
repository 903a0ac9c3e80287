"""Hour and day bars derived from minute bars, only for periods whose every minute is present."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market.bars import Timeframe, as_utc, empty_bars
from market.calendars import Calendar
from market.resample import resample_bars


def derive_complete(
    minutes: pd.DataFrame,
    calendar: Calendar,
    timeframe: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
) -> tuple[pd.DataFrame, pd.DatetimeIndex]:
    """Build ``timeframe`` bars opening in ``[start, end)`` from canonical minute bars.

    A period (an hour bin or a session of ``calendar``) is built only when every minute the
    calendar expects in it is present in ``minutes``; minutes off the calendar's grid are ignored.
    Returns the derived bars and the open times of the periods that could not be completed
    (missing minutes), both in time order.
    """
    tf = Timeframe.parse(timeframe)
    lo, hi = as_utc(start), as_utc(end)
    pad = pd.Timedelta(days=2)  # a session may open the day before its date (FX)
    grid = calendar.bar_grid(Timeframe.M1, lo - pad, hi + pad)
    expected_bins = calendar.bar_bins(grid, tf)
    keep = np.asarray((expected_bins >= lo) & (expected_bins < hi))
    expected = pd.Series(1, index=expected_bins[keep]).groupby(level=0).size()
    if expected.empty:
        return empty_bars(), pd.DatetimeIndex([], tz="UTC", name="ts")
    on_grid = minutes[np.isin(pd.DatetimeIndex(minutes.index).as_unit("ns").asi8, grid.asi8)]
    bins = calendar.bar_bins(pd.DatetimeIndex(on_grid.index), tf)
    inside = np.asarray((bins >= lo) & (bins < hi))
    present = pd.Series(1, index=bins[inside]).groupby(level=0).size()
    present = present.reindex(expected.index, fill_value=0)
    complete = expected.index[(present == expected).to_numpy()]
    chosen = on_grid[inside & np.isin(bins.asi8, pd.DatetimeIndex(complete).asi8)]
    incomplete = pd.DatetimeIndex(expected.index.difference(complete), name="ts")
    derived = resample_bars(chosen, tf, calendar) if len(chosen) else empty_bars()
    return derived, incomplete
