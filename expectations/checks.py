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
``_in_span`` (bool)
    False where the timestamp lies outside the span of dates the calendar knows
    (:attr:`market.calendars.Calendar.known_span`); such a bar is reported as that, and never
    judged on or off the grid or the calendar.
``_return_z`` (float, NaN where not computed)
    ``|r - median| / bound`` for the one-bar log return ``r`` of the close; a row passes while it
    is ``<= 1``. A real move can exceed it: the policy makes it a warning. See :func:`return_scores`.
``_ceiling_z`` (float, NaN where not computed)
    ``|r| / ceiling``: beyond the hard ceiling of the asset class (a move no real market makes).
``_spike`` (bool)
    True where the close jumps well beyond the recent typical move and the next bar takes it back.
``_split_like`` (bool)
    True where the close jumps one way by a ratio close to a split or unit ratio (1/2, 3, 1/10,
    100, ...) with no corporate action recorded for that bar.
``_split_unadjusted`` (bool)
    True where such a jump matches a recorded split on its ex-date: real, but unadjusted.
``_stale`` (bool)
    True where the close repeats the previous ``stale_run`` closes exactly.

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
    """Parameters of the one-bar return rules (see :func:`return_scores`).

    Attributes:
        window: number of past returns the rolling median and MAD use.
        k: multiple of the robust standard deviation (``1.4826 * MAD``) a return may deviate
            before it is reported (a warning: real markets make such moves).
        floor: smallest such bound, as an absolute log return (``0.1`` is about 10 %).
        min_periods: past returns needed before any bound is judged; until then only
            ``ceiling`` applies.
        spike_reversion: a spike's round trip ``|r_t + r_t+1|`` must be at most this fraction of
            its smaller leg.
        spike_k: multiple of the robust standard deviation both legs of a spike must exceed.
        spike_floor: smallest spike bound, as an absolute log return.
        ceiling: hard ceiling on ``|r|`` (a log return), judged from the first return on.
        split_ratios: price ratios of splits and unit errors (their inverses are added): a
            one-way jump by one of them is not a market move.
        split_tolerance: relative tolerance of a jump's ratio against ``split_ratios``.
        stale_run: a close equal to each of the ``stale_run`` closes before it is stale.
    """

    window: int
    k: float
    floor: float
    min_periods: int = 10
    spike_reversion: float = 0.5
    spike_k: float = 6.0
    spike_floor: float = 0.05
    ceiling: float = float("inf")
    split_ratios: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 10.0, 100.0)
    split_tolerance: float = 0.02
    stale_run: int = 3


@dataclass(frozen=True)
class ReturnFlags:
    """Per-bar outcome of :func:`return_scores`, for the bars of the checked batch."""

    z: np.ndarray
    ceiling_z: np.ndarray
    spike: np.ndarray
    split_like: np.ndarray
    split_unadjusted: np.ndarray
    stale: np.ndarray


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
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(on_grid, on_calendar, in_span)`` boolean arrays for UTC timestamps (NaT passes all).

    Intraday bars use :meth:`Calendar.bar_bins`: off calendar where it gives NaT, off the grid
    where the bar containing ``ts`` opens at another time. ``1d`` bars must sit at 00:00 UTC on
    a session date. A timestamp outside the calendar's known span fails ``in_span`` only.
    """
    tf = Timeframe.parse(timeframe)
    n = len(ts)
    on_grid = np.ones(n, dtype=bool)
    on_cal = np.ones(n, dtype=bool)
    in_span = ~calendar.outside_span(pd.DatetimeIndex(ts))
    present = ~np.asarray(ts.isna()) & in_span
    if not present.any():
        return on_grid, on_cal, in_span
    valid = pd.DatetimeIndex(ts[present]).as_unit("ns")
    if tf is Timeframe.D1:
        days = valid.normalize()
        sessions = calendar.bar_grid(tf, days.min(), days.max() + pd.Timedelta(days=1))
        on_grid[present] = np.asarray(days == valid)
        on_cal[present] = np.isin(days.asi8, sessions.as_unit("ns").asi8)
        return on_grid, on_cal, in_span
    bins = calendar.bar_bins(valid, tf)
    inside = ~np.asarray(bins.isna())
    on_cal[present] = inside
    on_grid[present] = ~inside | (bins.as_unit("ns").asi8 == valid.as_unit("ns").asi8)
    return on_grid, on_cal, in_span


def _past_rolling_median(values: np.ndarray, window: int, min_periods: int) -> np.ndarray:
    """Median of the ``window`` values before each position (the value itself excluded)."""
    rolled = pd.Series(values).rolling(window, min_periods=min_periods).median().to_numpy()
    out = np.full(len(values), np.nan)
    out[1:] = rolled[:-1]
    return out


def _near_ratio(jump: np.ndarray, ratios: np.ndarray, tolerance: float) -> np.ndarray:
    """True where ``exp(jump)`` is within ``tolerance`` (relative) of one of ``ratios``."""
    with np.errstate(invalid="ignore", over="ignore"):
        factor = np.exp(jump)[:, None]
        return np.asarray((np.abs(factor / ratios[None, :] - 1.0) <= tolerance).any(axis=1), dtype=bool)


def _stale(close: np.ndarray, run: int) -> np.ndarray:
    """True where ``close`` equals each of the ``run`` closes before it."""
    n = len(close)
    position = np.arange(n)
    changed = np.ones(n, dtype=bool)
    changed[1:] = close[1:] != close[:-1]
    # repeats so far = distance to the last bar whose close changed
    streak = position - np.maximum.accumulate(np.where(changed, position, 0))
    return streak >= max(int(run), 1)


def return_scores(
    log_close: np.ndarray,
    first_checked: int,
    params: ReturnParams,
    split_at: np.ndarray | None = None,
) -> ReturnFlags:
    """Robust, look-ahead-free one-bar return rules of a sorted close series.

    Args:
        log_close: natural log of the closes, sorted by time, only rows fit for returns
            (history first, then the batch).
        first_checked: index of the first element that belongs to the batch being validated;
            earlier elements only give context.
        params: the rules' parameters.
        split_at: per element, the ratio of a split recorded with that bar as its ex-date
            (``2.0`` for 2-for-1), NaN where none; default none anywhere.

    Returns:
        :class:`ReturnFlags` for the elements from ``first_checked`` on. With ``r_t`` the log
        return from the previous close, ``m_t`` the median of the ``window`` returns before
        ``t`` and ``s_t = 1.4826 * MAD_t`` a robust scale of those returns (the rolling median of
        past absolute deviations from their own rolling median):

        * ``z_t = |r_t - m_t| / max(k * s_t, floor)``, NaN until ``min_periods`` returns exist
          (no bound is judged from too few returns);
        * ``ceiling_z_t = |r_t| / ceiling``, from the first return on;
        * ``spike_t`` when ``|r_t - m_t|`` and ``|r_t+1 - m_t|`` both exceed
          ``max(spike_k * s_t, spike_floor)`` with opposite signs and the round trip
          ``|r_t + r_t+1|`` is at most ``spike_reversion`` of the smaller leg: the close jumped
          and the next bar took it back (it needs bar ``t+1`` by its nature; the bar after a
          spike is scored on its return from the close before the spike, so a correct bar is
          not blamed for the reversal);
        * ``split_like_t`` when a one-way jump (not a spike) beyond the ``z`` bound moves the
          price by a factor within ``split_tolerance`` of a split or unit ratio and no split is
          recorded for ``t``; ``split_unadjusted_t`` when it matches the split recorded there
          (a real split in unadjusted prices: ``z`` and the ceiling do not count it);
        * ``stale_t`` when the close equals each of the ``stale_run`` closes before it.

        Only data up to ``t`` enter ``z_t``, the ceiling, the split and stale flags: changing
        later bars never changes them.
    """
    n = len(log_close)
    m = max(n - first_checked, 0)
    if n == 0 or m == 0:
        empty = np.zeros(m, dtype=bool)
        return ReturnFlags(np.full(m, np.nan), np.full(m, np.nan), empty, empty, empty, empty)
    r = np.full(n, np.nan)
    r[1:] = np.diff(log_close)
    window = max(int(params.window), 2)
    min_periods = min(max(int(params.min_periods), 2), window)
    med = _past_rolling_median(r, window, min_periods)
    dev = np.abs(r - med)
    mad = _past_rolling_median(dev, window, min_periods)
    warm = ~(np.isnan(med) | np.isnan(mad))
    scale = MAD_TO_SIGMA * np.nan_to_num(mad)
    med0 = np.where(warm, med, 0.0)
    bound = np.maximum(params.k * scale, params.floor)
    spike_bound = np.maximum(params.spike_k * scale, params.spike_floor)
    nxt = np.full(n, np.nan)
    nxt[:-1] = r[1:]
    with np.errstate(invalid="ignore"):
        spike = (
            warm
            & (np.abs(r - med0) > spike_bound)
            & (np.abs(nxt - med0) > spike_bound)
            & (np.sign(r) * np.sign(nxt) < 0)
            & (np.abs(r + nxt) <= params.spike_reversion * np.minimum(np.abs(r), np.abs(nxt)))
        )
    adjusted = r.copy()
    after = np.flatnonzero(spike[:-1]) + 1
    adjusted[after] = log_close[after] - log_close[after - 2]
    recorded = np.full(n, np.nan) if split_at is None else np.asarray(split_at, dtype="float64")
    ratios = np.asarray(params.split_ratios, dtype="float64")
    ratios = np.concatenate([ratios, 1.0 / ratios])
    with np.errstate(invalid="ignore"):
        z = np.where(warm, np.abs(adjusted - med0) / bound, np.nan)
        jumped = warm & ~spike & (z > 1.0)
        known = np.isfinite(recorded) & (np.abs(np.exp(-adjusted) / recorded - 1.0) <= params.split_tolerance)
    split_like = jumped & ~known & _near_ratio(adjusted, ratios, params.split_tolerance)
    z = np.where(known, np.nan, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        ceiling_z = np.where(known, np.nan, np.abs(adjusted) / params.ceiling)
    stale = _stale(log_close, params.stale_run)
    tail = slice(first_checked, None)
    return ReturnFlags(
        z=z[tail],
        ceiling_z=ceiling_z[tail],
        spike=spike[tail],
        split_like=split_like[tail],
        split_unadjusted=known[tail],
        stale=stale[tail],
    )
