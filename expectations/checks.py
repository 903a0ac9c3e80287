"""Derived columns for checks that Great Expectations cannot express on its own.

Each function here is a pure, vectorised numpy/pandas kernel. The runner
(:mod:`expectations.runner`) adds their output to the frame it hands to Great Expectations as
columns whose names start with ``_``; the suites (``expectations/suites/*.json``) then assert
them with GE's built-in expectations (``expect_column_values_to_be_in_set``, ``..._between``),
so that every row failure comes from GE's ``unexpected_index_list``.

Derived columns of the ``bars`` suite (one value per row of the validated frame):

``_numeric`` (bool)
    Every OHLCV cell that was present is a number (a string such as ``"abc"`` is not).
``_oc_max`` / ``_oc_min`` (float)
    ``max(open, close)`` and ``min(open, close)``, compared with ``high`` and ``low``.
``_ts_unique`` (bool)
    False for every row whose timestamp repeats with different values, and for the second and
    later copies of a row repeated exactly (the first copy passes).
``_ts_in_order`` (bool)
    False where the timestamp is earlier than one on an earlier row of the frame.
``_not_future`` (bool)
    False where the bar opens after ``now``.
``_on_grid`` (bool)
    False where the timestamp is inside a session but not a bar open time of the timeframe
    (``10:17`` in an hourly series; a ``1d`` bar not at 00:00 UTC).
``_on_calendar`` (bool)
    False where no session of the calendar holds the timestamp (a Saturday, a holiday, the
    night for an exchange; for ``1d`` bars, a date that is not a session).
``_return_z`` (float, NaN where not computed)
    ``|r - median| / bound`` for the one-bar log return ``r`` of the close; a row passes while it
    is ``<= 1``. See :func:`return_scores`.
``_spike`` (bool)
    True where the close jumps and reverts within one bar. See :func:`return_scores`.

Rows whose timestamp is missing pass every timestamp check (``ts_not_null`` catches them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from market.bars import Timeframe
from market.calendars import Calendar

PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")
MAD_TO_SIGMA = 1.4826
_NAT = np.iinfo(np.int64).min


@dataclass(frozen=True)
class ReturnParams:
    """Parameters of the robust one-bar return bound (see :func:`return_scores`).

    Attributes:
        window: number of past returns the rolling median and MAD use.
        k: multiple of the robust standard deviation (``1.4826 * MAD``) a return may deviate.
        floor: smallest bound, as an absolute log return (``0.1`` is about 10 %).
        min_periods: past returns needed before the rolling statistics are used; before that the
            median is taken as 0 and the bound is ``floor``.
        spike_reversion: a spike's round trip ``|r_t + r_t+1|`` must be at most this fraction of
            its smaller leg.
    """

    window: int
    k: float
    floor: float
    min_periods: int = 10
    spike_reversion: float = 0.5


def coerce_numeric(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A column as float64, and a mask of the cells that were present but are not numbers.

    Strings that read as numbers (``"1.5"``) are converted; anything else becomes NaN and is
    marked in the mask. Missing cells (None, NaN) are not marked: they are nulls, not bad types.
    """
    if pd.api.types.is_float_dtype(values.dtype) or pd.api.types.is_integer_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan), np.zeros(len(values), dtype=bool)
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype="float64", na_value=np.nan), np.ones(len(values), dtype=bool)
    converted = pd.to_numeric(values, errors="coerce")
    out = converted.to_numpy(dtype="float64", na_value=np.nan)
    bad = np.isnan(out) & ~values.isna().to_numpy()
    return out, bad


def ts_unique(ts_ns: np.ndarray, values: np.ndarray) -> np.ndarray:
    """True where a row's timestamp is unique, or it is the first copy of an exact duplicate.

    Args:
        ts_ns: int64 nanoseconds since the epoch (``NaT`` as int64 minimum), one per row.
        values: float array ``(rows, columns)`` of the row's values (NaN equals NaN here).

    A timestamp that repeats with different values fails on every one of its rows.
    """
    n = len(ts_ns)
    out = np.ones(n, dtype=bool)
    if n < 2:
        return out
    order = np.argsort(ts_ns, kind="stable")
    sorted_ts = ts_ns[order]
    same_as_prev = np.zeros(n, dtype=bool)
    same_as_prev[1:] = (sorted_ts[1:] == sorted_ts[:-1]) & (sorted_ts[1:] != _NAT)
    if not same_as_prev.any():
        return out
    in_group = same_as_prev.copy()
    in_group[:-1] |= same_as_prev[1:]
    group_id = np.cumsum(~same_as_prev)
    idx = np.flatnonzero(in_group)
    rows = values[order[idx]]
    first_pos = np.flatnonzero(~same_as_prev)
    first_of_group = first_pos[group_id - 1]
    ref = values[order[first_of_group[idx]]]
    equal = ((rows == ref) | (np.isnan(rows) & np.isnan(ref))).all(axis=1)
    conflict = np.zeros(n + 1, dtype=bool)
    np.logical_or.at(conflict, group_id[idx], ~equal)
    sorted_ok = np.ones(n, dtype=bool)
    sorted_ok[idx] = ~conflict[group_id[idx]] & ~same_as_prev[idx]
    out[order] = sorted_ok
    return out


def ts_in_order(ts_ns: np.ndarray) -> np.ndarray:
    """True where the timestamp is not earlier than any timestamp on an earlier row (NaT passes)."""
    valid = ts_ns != _NAT
    filled = np.where(valid, ts_ns, _NAT)
    running = np.maximum.accumulate(filled)
    prev_max = np.empty_like(running)
    if len(running):
        prev_max[0] = _NAT
        prev_max[1:] = running[:-1]
    return ~valid | (ts_ns >= prev_max)


def on_grid_and_calendar(
    ts: pd.DatetimeIndex, timeframe: Timeframe | str, calendar: Calendar
) -> tuple[np.ndarray, np.ndarray]:
    """``(on_grid, on_calendar)`` boolean arrays for UTC timestamps (NaT passes both).

    Intraday bars use :meth:`Calendar.bar_bins`: off calendar where it gives NaT, off the grid
    where the bar containing ``ts`` opens at another time. ``1d`` bars must sit at 00:00 UTC on
    a session date.
    """
    tf = Timeframe.parse(timeframe)
    n = len(ts)
    on_grid = np.ones(n, dtype=bool)
    on_cal = np.ones(n, dtype=bool)
    present = ~np.asarray(ts.isna())
    if not present.any():
        return on_grid, on_cal
    valid = pd.DatetimeIndex(ts[present]).as_unit("ns")
    if tf is Timeframe.D1:
        days = valid.normalize()
        sessions = calendar.bar_grid(tf, days.min(), days.max() + pd.Timedelta(days=1))
        on_grid[present] = np.asarray(days == valid)
        on_cal[present] = np.isin(days.asi8, sessions.as_unit("ns").asi8)
        return on_grid, on_cal
    bins = calendar.bar_bins(valid, tf)
    inside = ~np.asarray(bins.isna())
    on_cal[present] = inside
    on_grid[present] = ~inside | (bins.as_unit("ns").asi8 == valid.as_unit("ns").asi8)
    return on_grid, on_cal


def _past_rolling_median(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Median of the ``window`` values before each position (the value itself excluded)."""
    rolled = pd.Series(values).rolling(window, min_periods=min_periods).median().to_numpy()
    out = np.full(len(values), np.nan)
    out[1:] = rolled[:-1]
    return out


def return_scores(
    log_close: np.ndarray, first_checked: int, params: ReturnParams
) -> tuple[np.ndarray, np.ndarray]:
    """Robust, look-ahead-free one-bar return scores and spike flags of a sorted close series.

    Args:
        log_close: natural log of the closes, sorted by time, only rows fit for returns
            (history first, then the batch).
        first_checked: index of the first element that belongs to the batch being validated;
            earlier elements only give context.
        params: the bound's parameters.

    Returns:
        ``(z, spike)`` for the elements from ``first_checked`` on. With ``r_t`` the log return
        from the previous close, ``m_t`` the median of the ``window`` returns before ``t`` and
        ``MAD_t`` a robust scale of those returns (the rolling median of past absolute
        deviations from their own rolling median), the bound is
        ``b_t = max(k * 1.4826 * MAD_t, floor)`` and ``z_t = |r_t - m_t| / b_t`` (``m_t = 0`` and
        ``b_t = floor`` until ``min_periods`` returns exist). Only data up to ``t`` enter ``z_t``:
        changing later bars never changes it.

        ``spike_t`` is True when ``|r_t| > b_t`` and ``|r_t+1| > b_t`` with opposite signs and
        ``|r_t + r_t+1| <= spike_reversion * min(|r_t|, |r_t+1|)``: the close jumped and came
        back. It needs bar ``t+1`` by its nature. The bar after a spike is scored on its return
        from the close before the spike, so a correct bar is not blamed for the reversal.
    """
    n = len(log_close)
    m = max(n - first_checked, 0)
    if n == 0 or m == 0:
        return np.full(m, np.nan), np.zeros(m, dtype=bool)
    r = np.full(n, np.nan)
    r[1:] = np.diff(log_close)
    window = max(int(params.window), 2)
    min_periods = min(max(int(params.min_periods), 2), window)
    med = _past_rolling_median(r, window, min_periods)
    dev = np.abs(r - med)
    mad = _past_rolling_median(dev, window, min_periods)
    cold = np.isnan(med) | np.isnan(mad)
    med = np.where(cold, 0.0, med)
    bound = np.where(
        cold, params.floor, np.maximum(params.k * MAD_TO_SIGMA * np.nan_to_num(mad), params.floor)
    )
    nxt = np.full(n, np.nan)
    nxt[:-1] = r[1:]
    with np.errstate(invalid="ignore"):
        spike = (
            (np.abs(r) > bound)
            & (np.abs(nxt) > bound)
            & (np.sign(r) * np.sign(nxt) < 0)
            & (np.abs(r + nxt) <= params.spike_reversion * np.minimum(np.abs(r), np.abs(nxt)))
        )
    adjusted = r.copy()
    after = np.flatnonzero(spike[:-1]) + 1
    adjusted[after] = log_close[after] - log_close[after - 2]
    with np.errstate(invalid="ignore"):
        z = np.abs(adjusted - med) / bound
    return z[first_checked:], spike[first_checked:]
