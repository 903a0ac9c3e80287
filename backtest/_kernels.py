"""Numeric kernels of :mod:`backtest`: numba functions over contiguous numpy arrays.

Contract of every kernel (the ``*_nb`` names, after vectorbt):

* the simulation (:func:`market.rebalance.advance_nb`, shared with :mod:`envs`) gets C-contiguous
  ``float64`` arrays already validated by :mod:`backtest.engine` (finite, positive prices; finite
  weights in ``[-1, 1]``) with the validation kernels below; the other kernels do not check them;
* price and weight matrices are ``(n_bars, n_assets)``;
* they are pure: no global state, outputs are freshly allocated.

Everything compiles lazily on first call (``cache=True`` keeps the machine code on disk);
importing this module does no work beyond defining the functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NAT = np.iinfo(np.int64).min  # pandas' NaT as int64


@njit(cache=True)
def first_bad_price_nb(values: np.ndarray) -> int:
    """Index of the first value of 1-d ``values`` that is not a finite positive number, else -1."""
    bad = np.int64(0)
    for v in values:  # branch-free, so it vectorises; the slow search runs only on bad input
        bad |= np.int64(v != v) | np.int64(v <= 0.0) | np.int64(v == np.inf)
    if bad:
        for i in range(values.shape[0]):
            if not (values[i] > 0.0 and values[i] < np.inf):
                return i
    return -1


@njit(cache=True)
def first_unsorted_nb(stamps: np.ndarray) -> int:
    """Index of the first int64 stamp that is NaT or not above its predecessor, else -1."""
    n = stamps.shape[0]
    bad = np.int64(n > 0 and stamps[0] == _NAT)
    for i in range(1, n):  # NaT is the smallest int64: after the first stamp it breaks the order
        bad |= np.int64(stamps[i] <= stamps[i - 1])
    if bad:
        for i in range(n):
            if stamps[i] == _NAT or (i > 0 and stamps[i] <= stamps[i - 1]):
                return i
    return -1


@njit(cache=True)
def weight_problems_nb(weights: np.ndarray, tol: float) -> tuple[int, int, int, int, bool]:
    """One pass over target weights ``(n, k)``: what :func:`backtest.engine.run` refuses.

    Returns ``(nan_count, first_nan, first_big, first_over, needs_clip)``: the number of NaN
    values and the flat index (``row * k + col``) of the first; the flat index of the first
    value with ``|w| > 1 + tol`` (infinite included); the first row whose absolute weights sum
    to more than ``1 + tol``; whether some ``|w|`` exceeds 1 (within ``tol``) and must be
    clipped. Indexes are -1 when there is no such value.
    """
    n, k = weights.shape
    nan_count = 0
    first_nan = -1
    first_big = -1
    first_over = -1
    needs_clip = False
    limit = 1.0 + tol
    for t in range(n):
        gross = 0.0
        for a in range(k):
            w = weights[t, a]
            if np.isnan(w):
                nan_count += 1
                if first_nan < 0:
                    first_nan = t * k + a
                continue
            size = abs(w)
            gross += size
            if size > 1.0:
                needs_clip = True
                if size > limit and first_big < 0:
                    first_big = t * k + a
        if gross > limit and first_over < 0:
            first_over = t
    return nan_count, first_nan, first_big, first_over, needs_clip


@njit(cache=True)
def _average_nb(average: float, units: float, price: float, more: float) -> float:
    """Unit-weighted average price after adding ``more`` units at ``price``; exact for one fill."""
    if units == 0.0:
        return price
    return average + (price - average) * (more / (units + more))


@njit(cache=True)
def trades_nb(
    fill_bar: np.ndarray,
    fill_asset: np.ndarray,
    fill_units: np.ndarray,
    fill_price: np.ndarray,
    fill_fee: np.ndarray,
    last_close: np.ndarray,
    last_bar: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Round trips from the fills of :func:`simulate_nb`, one row per trade.

    A trade opens when an asset's units leave zero, and ends when they return to zero or change
    sign (a flip ends one trade and opens the next at the same fill; the fill's fee is split
    between them in proportion to units). Changes of size on the same side belong to the trade.
    A trade still open after the last bar (``last_bar``) is valued at ``last_close`` of its
    asset. Rows come in the order the trades end, the open ones last (by asset).

    Returns ``(ints, floats)``: ``ints[i] = (asset, side, entry_bar, exit_bar, is_open)`` with
    side ``+1``/``-1``; ``floats[i] = (entry_price, exit_price, pnl, costs, entry_notional)``
    where the prices are unit-weighted averages of the increasing / decreasing fills (a single
    fill's price exactly), ``pnl`` is net of costs in account currency and ``entry_notional``
    is the sum of increasing notional.
    """
    k = last_close.shape[0]
    m = fill_bar.shape[0]
    ints = np.empty((m, 5), dtype=np.int64)  # every trade is opened by a fill
    floats = np.empty((m, 5))
    prev = np.zeros(k)
    side = np.zeros(k, dtype=np.int64)
    entry_bar = np.zeros(k, dtype=np.int64)
    in_units = np.zeros(k)
    in_price = np.zeros(k)
    in_notional = np.zeros(k)
    out_units = np.zeros(k)
    out_price = np.zeros(k)
    cost = np.zeros(k)
    flow = np.zeros(k)
    count = 0
    for i in range(m):
        a = fill_asset[i]
        u = fill_units[i]
        p = fill_price[i]
        fee = fill_fee[i]
        before = prev[a]
        prev[a] = u
        closing = 0.0
        opening = 0.0
        if before == 0.0:
            opening = abs(u)
        elif u == 0.0 or (u > 0.0) != (before > 0.0):
            closing = abs(before)
            opening = abs(u)
        else:  # re-sized on the same side: the trade goes on
            change = abs(u) - abs(before)
            if change > 0.0:
                in_price[a] = _average_nb(in_price[a], in_units[a], p, change)
                in_units[a] += change
                in_notional[a] += change * p
            else:
                out_price[a] = _average_nb(out_price[a], out_units[a], p, -change)
                out_units[a] -= change
            cost[a] += fee
            flow[a] -= (u - before) * p + fee
            continue
        close_fee = fee * closing / (closing + opening)
        if closing > 0.0:
            out_price[a] = _average_nb(out_price[a], out_units[a], p, closing)
            cost[a] += close_fee
            flow[a] -= -before * p + close_fee
            ints[count, 0] = a
            ints[count, 1] = side[a]
            ints[count, 2] = entry_bar[a]
            ints[count, 3] = fill_bar[i]
            ints[count, 4] = 0
            floats[count, 0] = in_price[a]
            floats[count, 1] = out_price[a]
            floats[count, 2] = flow[a]
            floats[count, 3] = cost[a]
            floats[count, 4] = in_notional[a]
            count += 1
        if opening > 0.0:
            side[a] = 1 if u > 0.0 else -1
            entry_bar[a] = fill_bar[i]
            in_units[a] = opening
            in_price[a] = p
            in_notional[a] = opening * p
            out_units[a] = 0.0
            cost[a] = fee - close_fee
            flow[a] = -u * p - cost[a]
    for a in range(k):
        if prev[a] == 0.0:
            continue
        last = last_close[a]
        ints[count, 0] = a
        ints[count, 1] = side[a]
        ints[count, 2] = entry_bar[a]
        ints[count, 3] = last_bar
        ints[count, 4] = 1
        floats[count, 0] = in_price[a]
        floats[count, 1] = _average_nb(out_price[a], out_units[a], last, abs(prev[a]))
        floats[count, 2] = flow[a] + prev[a] * last
        floats[count, 3] = cost[a]
        floats[count, 4] = in_notional[a]
        count += 1
    return ints[:count], floats[:count]


@njit(cache=True)
def wealth_stats_nb(returns: np.ndarray) -> tuple[float, float, int, float]:
    """One pass over compounded ``returns``: final wealth, drawdown and downside.

    The wealth path starts at 1 before the first return, so a loss on the first bar counts.
    Returns ``(wealth, max_drawdown, duration, downside_mean_square)``: the final wealth; the
    most negative ``wealth / running_peak - 1`` (0.0 when wealth never falls); the largest
    number of consecutive bars spent below the running peak; ``mean(min(r, 0) ** 2)`` (NaN for
    no returns).
    """
    wealth = 1.0
    peak = 1.0
    worst = 0.0
    run = 0
    longest = 0
    downside = 0.0
    for r in returns:
        wealth *= 1.0 + r
        if r < 0.0:
            downside += r * r
        if wealth >= peak:
            peak = wealth
            run = 0
        else:
            run += 1
            if run > longest:
                longest = run
            dd = wealth / peak - 1.0 if peak > 0.0 else -1.0
            if dd < worst:
                worst = dd
    n = returns.shape[0]
    return wealth, worst, longest, downside / n if n else np.nan


@njit(cache=True)
def position_stats_nb(held: np.ndarray) -> tuple[float, int]:
    """Traded weight and exposure of held weights ``(n, k)`` (NaN counts as 0).

    Returns ``(traded, exposed)``: ``sum_t sum_a |held[t, a] - held[t - 1, a]|`` with
    ``held[-1] = 0``, and the number of bars with a nonzero weight in some asset.
    """
    n, k = held.shape
    before = np.zeros(k)
    traded = 0.0
    exposed = 0
    for t in range(n):
        nonzero = np.int64(0)
        for a in range(k):
            w = held[t, a]
            w = w if w == w else 0.0
            traded += abs(w - before[a])
            nonzero |= np.int64(w != 0.0)
            before[a] = w
        exposed += int(nonzero)
    return traded, exposed
