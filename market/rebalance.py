"""Trading costs and one rebalance of a cash account to target weights: the arithmetic shared by
:mod:`backtest` (whole backtests) and :mod:`envs` (one environment step at a time).

:func:`backtest.engine.run`'s module docstring is the manual of the model; in short, at an
execution the account is marked at the execution prices (``E = cash + sum(units * price)``), every
asset whose target differs from its previous target is traded to ``units = w * X / price`` where
``X`` is what remains of ``E`` once the costs of those fills are paid
(:func:`value_after_costs_nb`), and each fill pays ``rate * |traded notional| + min_fee`` from
cash. Keeping this in one place means a backtest and an environment episode of the same targets
cannot disagree.

The kernels (``*_nb``) compile lazily on first call (``cache=True`` keeps the machine code on
disk); importing this module defines them and :class:`Costs`, nothing more.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

__all__ = ["Costs", "advance_nb", "value_after_costs_nb"]

_MAX_COST_ITERATIONS = 64


@dataclass(frozen=True)
class Costs:
    """Trading costs, charged on every fill (entry, exit, re-size), long or short.

    Attributes:
        commission_bps: commission in basis points of the traded notional (1.0 = 0.01%).
        slippage_bps: slippage in basis points of the traded notional, charged like a fee (the
            fill price itself is not moved).
        min_fee: a fixed fee per fill with nonzero traded notional, in account currency. Equity
            starts at ``initial_capital`` (1.0 by default), so with the default capital
            ``min_fee=0.0005`` is 5 bps of the starting capital per fill.

    Raises:
        ValueError: when a field is negative, NaN or infinite.
    """

    commission_bps: float = 1.0
    slippage_bps: float = 1.0
    min_fee: float = 0.0

    def __post_init__(self) -> None:
        for name in ("commission_bps", "slippage_bps", "min_fee"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"Costs.{name} must be a finite number, got {value!r}")
            if value < 0:
                raise ValueError(f"Costs.{name} must be >= 0 (a cost, not a rebate), got {value!r}")

    @property
    def rate(self) -> float:
        """Proportional cost per unit of traded notional: ``(commission + slippage) / 1e4``."""
        return (self.commission_bps + self.slippage_bps) / 1e4


@njit(cache=True)
def value_after_costs_nb(
    value: float,
    held_value: np.ndarray,
    target: np.ndarray,
    trading: np.ndarray,
    fee_rate: float,
    min_fee: float,
) -> float:
    """The account value ``x`` left once the fills that bring each traded asset to ``target * x`` are paid.

    ``value`` is the account marked at the execution prices before the fills, ``held_value``
    each asset's position value at those prices, ``trading`` which assets are traded. ``x``
    solves ``x = value - sum_a (fee_rate * |target[a] * x - held_value[a]| + min_fee)`` over the
    traded assets whose position changes. The right side is piecewise linear in ``x`` with slope
    ``-fee_rate * sum(±target)``, so Newton's method on it ends exactly on the root in a few
    steps (the signs of the trades stop changing). Buying with all the cash from flat gives
    ``x = (value - min_fee) / (1 + fee_rate)``, vectorbt's size ``cash / (price * (1 + fee))``.
    Returns a value ``<= 0`` when the costs would eat the whole account.
    """
    x = value
    for _ in range(_MAX_COST_ITERATIONS):
        num = value
        den = 1.0
        for a in range(target.shape[0]):
            if not trading[a]:
                continue
            gap = target[a] * x - held_value[a]
            if gap > 0.0:
                num += fee_rate * held_value[a] - min_fee
                den += fee_rate * target[a]
            elif gap < 0.0:
                num -= fee_rate * held_value[a] + min_fee
                den -= fee_rate * target[a]
        if den <= 0.0:  # a cost rate of 100% or more: nothing can be bought
            return 0.0
        nxt = num / den
        if nxt == x:
            break
        x = nxt
    return x


@njit(cache=True)
def advance_nb(
    open_: np.ndarray,
    close: np.ndarray,
    target: np.ndarray,
    exec_at_close: bool,
    fee_rate: float,
    min_fee: float,
    start: int,
    stop: int,
    target_first: int,
    account: np.ndarray,
    units: np.ndarray,
    weight: np.ndarray,
    prev_target: np.ndarray,
    equity: np.ndarray,
    returns: np.ndarray,
    held: np.ndarray,
    fill_bar: np.ndarray,
    fill_asset: np.ndarray,
    fill_units: np.ndarray,
    fill_price: np.ndarray,
    fill_fee: np.ndarray,
    m: int,
) -> int:
    """Advance a cash account over bars ``start .. stop - 1``, trading target weights; in place.

    Prices ``open_`` and ``close`` are ``(n_bars, k)``. The target decided at bar ``src`` is the
    row ``target[src - target_first]``; it is executed at ``close[src]`` (``exec_at_close``) or at
    ``open_[src + 1]``, so bar ``t`` executes the row of ``src = t`` or ``src = t - 1`` (none when
    ``src < 0``). At an execution the assets whose target differs from ``prev_target`` (exact
    comparison) are traded; when none does, nothing happens. Otherwise the account
    ``E = cash + sum(units * price)`` is marked at the execution prices, ``X``
    (:func:`value_after_costs_nb`) is what remains of it once the fills are paid, and each traded
    asset goes to ``units = target * X / price``, paying ``fee_rate * |notional| + min_fee`` from
    cash; the others keep their units (their weight drifts). When ``E <= 0`` or ``X <= 0`` the
    account is dead: every position is closed (those fills still pay their costs) and it never
    trades again. Each bar is then marked at its close.

    State, updated in place: ``account = [cash, previous equity, dead (0.0 or 1.0)]``;
    ``units``; ``weight`` (the target in force, 0 everywhere once dead); ``prev_target`` (the
    last target row executed per asset).

    Outputs, row ``t - start`` for bar ``t``: ``equity`` (the account at the bar's close),
    ``returns`` (``equity / previous equity - 1``, 0 after a non-positive equity) and ``held``
    (the target in force during the bar, ``(rows, k)``). Fills are written from position ``m``
    on into ``fill_bar``, ``fill_asset``, ``fill_units`` (units held after the fill),
    ``fill_price`` and ``fill_fee``: at most ``k`` per bar.

    Returns the next free fill position.
    """
    k = close.shape[1]
    trading = np.empty(k, dtype=np.bool_)
    held_value = np.empty(k)
    cash = account[0]
    prev_equity = account[1]
    dead = account[2] != 0.0
    for t in range(start, stop):
        src = t if exec_at_close else t - 1
        if src >= 0 and not dead:
            r = src - target_first
            changed = False
            for a in range(k):
                trading[a] = target[r, a] != prev_target[a]
                changed = changed or trading[a]
            if changed:
                row = target[r]
                prices = close[t] if exec_at_close else open_[t]
                value = cash
                for a in range(k):
                    held_value[a] = units[a] * prices[a]
                    value += held_value[a]
                after = 0.0
                if value > 0.0:
                    after = value_after_costs_nb(value, held_value, row, trading, fee_rate, min_fee)
                if after <= 0.0:
                    dead = True
                for a in range(k):
                    if not (dead or trading[a]):
                        continue
                    prev_target[a] = row[a]
                    w = 0.0 if dead else row[a]
                    weight[a] = w
                    new_units = w * after / prices[a]
                    notional = abs(new_units - units[a]) * prices[a]
                    if notional > 0.0:
                        fee = fee_rate * notional + min_fee
                        cash -= (new_units - units[a]) * prices[a] + fee
                        units[a] = new_units
                        fill_bar[m] = t
                        fill_asset[m] = a
                        fill_units[m] = new_units
                        fill_price[m] = prices[a]
                        fill_fee[m] = fee
                        m += 1
        value = cash
        out = t - start
        for a in range(k):
            value += units[a] * close[t, a]
            held[out, a] = weight[a]
        equity[out] = value
        returns[out] = value / prev_equity - 1.0 if prev_equity > 0.0 else 0.0
        prev_equity = value
    account[0] = cash
    account[1] = prev_equity
    account[2] = 1.0 if dead else 0.0
    return m
