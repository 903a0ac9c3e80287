"""Numeric kernels of :mod:`backtest`: numba functions over contiguous float64 arrays.

Contract of every kernel (the ``*_nb`` names, after vectorbt):

* inputs are C-contiguous ``float64`` arrays already validated by :mod:`backtest.engine`
  (finite, positive prices; finite weights in ``[-1, 1]``); the kernels do not check them;
* price and weight matrices are ``(n_bars, n_assets)``;
* they are pure: no global state, outputs are freshly allocated.

Everything compiles lazily on first call (``cache=True`` keeps the machine code on disk);
importing this module does no work beyond defining the functions.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def simulate_nb(
    open_: np.ndarray,
    close: np.ndarray,
    target: np.ndarray,
    exec_at_close: bool,
    fee_rate: float,
    min_fee: float,
    initial_capital: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Simulate a cash account that trades target weights; see :func:`backtest.engine.run`.

    The target row ``t`` is executed at ``open_[t + 1]`` (``exec_at_close`` false) or at
    ``close[t]`` (true). At an execution point the account is marked at the execution prices
    (``E = cash + sum(units * price)``); every asset whose target differs from its previous
    target is traded to ``units = w * E / price``; the others keep their units. Each trade pays
    ``fee_rate * |traded notional| + min_fee``. Once ``E <= 0`` every position is closed and
    no further trade happens.

    Returns ``(equity, held, units, fill_price, fees, traded)``: equity at each bar's close
    ``(n,)``; the target weight in force during each bar ``(n, k)``; units held after each
    bar's execution ``(n, k)``; the price of the fill at each bar (NaN without a fill), the
    fee paid and the absolute traded notional at each bar ``(n, k)``.
    """
    n, k = close.shape
    equity = np.empty(n)
    held = np.zeros((n, k))
    units_out = np.zeros((n, k))
    fill_price = np.full((n, k), np.nan)
    fees = np.zeros((n, k))
    traded = np.zeros((n, k))
    units = np.zeros(k)
    weight = np.zeros(k)  # target in force
    prev_target = np.zeros(k)  # last target row seen (executed or not changed)
    cash = initial_capital
    dead = False
    for t in range(n):
        src = t if exec_at_close else t - 1
        if src >= 0 and not dead:
            prices = close[t] if exec_at_close else open_[t]
            changed = False
            for a in range(k):
                if target[src, a] != prev_target[a]:
                    changed = True
                    break
            if changed:
                value = cash
                for a in range(k):
                    value += units[a] * prices[a]
                if value <= 0.0:
                    dead = True
                for a in range(k):
                    w = 0.0 if dead else target[src, a]
                    if w == prev_target[a] and not dead:
                        continue
                    new_units = w * value / prices[a] if not dead else 0.0
                    notional = abs(new_units - units[a]) * prices[a]
                    prev_target[a] = target[src, a]
                    weight[a] = w
                    if notional > 0.0:
                        fee = fee_rate * notional + min_fee
                        cash -= (new_units - units[a]) * prices[a] + fee
                        fees[t, a] = fee
                        traded[t, a] = notional
                        fill_price[t, a] = prices[a]
                        units[a] = new_units
        value = cash
        for a in range(k):
            value += units[a] * close[t, a]
            held[t, a] = weight[a]
            units_out[t, a] = units[a]
        equity[t] = value
    return equity, held, units_out, fill_price, fees, traded


@njit(cache=True)
def returns_nb(equity: np.ndarray, initial_capital: float) -> np.ndarray:
    """Per-bar simple returns of ``equity``; the first is against ``initial_capital``.

    A bar that follows a non-positive equity has return 0 (the account is closed).
    """
    n = equity.shape[0]
    out = np.empty(n)
    prev = initial_capital
    for t in range(n):
        out[t] = equity[t] / prev - 1.0 if prev > 0.0 else 0.0
        prev = equity[t]
    return out


@njit(cache=True)
def count_trades_nb(units: np.ndarray) -> int:
    """Upper bound of the number of round trips in ``units`` ``(n, k)``: openings and flips."""
    n, k = units.shape
    count = 0
    for a in range(k):
        prev = 0.0
        for t in range(n):
            u = units[t, a]
            if u != 0.0 and (prev == 0.0 or (u > 0.0) != (prev > 0.0)):
                count += 1
            prev = u
    return count


@njit(cache=True)
def trades_nb(
    units: np.ndarray, fill_price: np.ndarray, fees: np.ndarray, close: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Round trips from the fills of :func:`simulate_nb`, one row per trade.

    A trade opens when an asset's units leave zero, and ends when they return to zero or change
    sign (a flip ends one trade and opens the next at the same fill; the fill's fee is split
    between them in proportion to units). Changes of size on the same side belong to the trade.
    A trade still open after the last bar is valued at the last close.

    Returns ``(ints, floats, count)``: ``ints[i] = (asset, side, entry_bar, exit_bar, is_open)``
    with side ``+1``/``-1``; ``floats[i] = (entry_price, exit_price, pnl, costs, entry_notional)``
    where the prices are unit-weighted averages of the increasing / decreasing fills, ``pnl`` is
    net of costs in account currency and ``entry_notional`` is the sum of increasing notional.
    """
    n, k = units.shape
    cap = count_trades_nb(units)
    ints = np.zeros((cap, 5), dtype=np.int64)
    floats = np.zeros((cap, 5))
    m = 0
    for a in range(k):
        prev = 0.0
        side = 0
        entry_bar = 0
        in_units = 0.0
        in_notional = 0.0
        out_units = 0.0
        out_notional = 0.0
        cost = 0.0
        flow = 0.0
        for t in range(n):
            u = units[t, a]
            if u == prev:
                continue
            p = fill_price[t, a]
            fee = fees[t, a]
            closing = 0.0
            opening = 0.0
            if prev == 0.0:
                opening = abs(u)
            elif u == 0.0 or (u > 0.0) != (prev > 0.0):
                closing = abs(prev)
                opening = abs(u)
            elif abs(u) > abs(prev):
                in_units += abs(u) - abs(prev)
                in_notional += (abs(u) - abs(prev)) * p
            else:
                out_units += abs(prev) - abs(u)
                out_notional += (abs(prev) - abs(u)) * p
            if closing == 0.0 and opening == 0.0:
                cost += fee
                flow -= (u - prev) * p + fee
                prev = u
                continue
            close_fee = fee * closing / (closing + opening)
            if closing > 0.0:
                out_units += closing
                out_notional += closing * p
                cost += close_fee
                flow -= -prev * p + close_fee
                ints[m, 0] = a
                ints[m, 1] = side
                ints[m, 2] = entry_bar
                ints[m, 3] = t
                ints[m, 4] = 0
                floats[m, 0] = in_notional / in_units
                floats[m, 1] = out_notional / out_units
                floats[m, 2] = flow
                floats[m, 3] = cost
                floats[m, 4] = in_notional
                m += 1
            if opening > 0.0:
                side = 1 if u > 0.0 else -1
                entry_bar = t
                in_units = opening
                in_notional = opening * p
                out_units = 0.0
                out_notional = 0.0
                cost = fee - close_fee
                flow = -u * p - cost
            prev = u
        if prev != 0.0:
            last = close[n - 1, a]
            ints[m, 0] = a
            ints[m, 1] = side
            ints[m, 2] = entry_bar
            ints[m, 3] = n - 1
            ints[m, 4] = 1
            floats[m, 0] = in_notional / in_units
            floats[m, 1] = (out_notional + abs(prev) * last) / (out_units + abs(prev))
            floats[m, 2] = flow + prev * last
            floats[m, 3] = cost
            floats[m, 4] = in_notional
            m += 1
    return ints, floats, m


@njit(cache=True)
def drawdown_nb(returns: np.ndarray) -> tuple[float, int]:
    """Maximum drawdown of the compounded ``returns`` and its longest duration.

    The wealth path starts at 1 before the first return, so a loss on the first bar counts.
    Returns ``(max_drawdown, duration)``: the most negative ``wealth / running_peak - 1``
    (0.0 when wealth never falls) and the largest number of consecutive bars spent below the
    running peak.
    """
    wealth = 1.0
    peak = 1.0
    worst = 0.0
    run = 0
    longest = 0
    for r in returns:
        wealth *= 1.0 + r
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
    return worst, longest


@njit(cache=True)
def turnover_nb(held: np.ndarray) -> np.ndarray:
    """Per-bar traded weight ``sum_a |held[t, a] - held[t - 1, a]|`` with ``held[-1] = 0``."""
    n, k = held.shape
    out = np.zeros(n)
    for t in range(n):
        s = 0.0
        for a in range(k):
            before = held[t - 1, a] if t > 0 else 0.0
            s += abs(held[t, a] - before)
        out[t] = s
    return out
