"""Aggregate bars to a coarser timeframe on an asset's calendar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from market.bars import BAR_COLUMNS, Timeframe, canonical_bars, empty_bars
from market.calendars import Calendar


def resample_bars(bars: pd.DataFrame, timeframe: Timeframe | str, calendar: Calendar) -> pd.DataFrame:
    """Aggregate canonical ``bars`` into ``timeframe`` bars on ``calendar``.

    Open is the first open, high the maximum, low the minimum, close the last close and volume
    the sum. Hour bins start at the session open; day bins are the calendar's sessions (so an FX
    day runs 17:00 to 17:00 New York time). A bin is emitted when at least one bar falls in it;
    the last bin may be incomplete if the input stops inside it.

    Raises:
        ValueError: when a bar lies outside every session of the calendar, or the input is
            coarser than ``timeframe``.
    """
    tf = Timeframe.parse(timeframe)
    bars = canonical_bars(bars)
    if bars.empty:
        return empty_bars()
    index = pd.DatetimeIndex(bars.index)
    if len(bars) > 1 and tf.is_intraday:
        finest = pd.Timedelta(np.diff(index.asi8).min())
        if finest > tf.delta:
            raise ValueError(f"cannot resample bars spaced {finest} apart to the finer timeframe {tf.value}")
    bins = calendar.bar_bins(index, tf)
    outside = np.asarray(bins.isna())
    if outside.any():
        first = index[outside][0]
        raise ValueError(
            f"{int(outside.sum())} bar(s) lie outside the sessions of calendar {calendar.name} "
            f"(first at {first.isoformat()}); validate the series or pick the asset's calendar"
        )
    keys = bins.asi8
    starts = np.concatenate(([0], np.flatnonzero(np.diff(keys) != 0) + 1))
    ends = np.concatenate((starts[1:], [len(keys)]))
    cols = {c: bars[c].to_numpy() for c in BAR_COLUMNS}
    out = pd.DataFrame(
        {
            "open": cols["open"][starts],
            "high": np.maximum.reduceat(cols["high"], starts),
            "low": np.minimum.reduceat(cols["low"], starts),
            "close": cols["close"][ends - 1],
            "volume": np.add.reduceat(cols["volume"], starts),
        },
        index=pd.DatetimeIndex(bins[starts], name="ts"),
    )
    return out
