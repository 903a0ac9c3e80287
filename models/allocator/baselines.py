"""The allocator's baselines as target weights: equal weight, buy and hold, minimum variance, maximum Sharpe.

Pure numpy, pandas and scikit-learn; the backtests are :mod:`backtest.allocation`'s. Each
baseline is first a *desired* weight per asset and decision bar (a row ``t`` decided at the close
of ``t`` with the prices up to that close only), long only, each asset capped at ``max_weight``
and the sum at ``gross_cap``, the rest in cash:

* ``equal_weight``: ``min(1 / N, max_weight)`` in every asset;
* ``min_variance``: the long-only minimum-variance portfolio of the Ledoit-Wolf covariance
  (:class:`sklearn.covariance.LedoitWolf`) of the last ``window`` daily log returns up to ``t``
  (rows before ``window`` returns exist hold equal weights);
* ``max_sharpe``: the long-only portfolio of maximum ``w'mu / sqrt(w' S w)`` with ``mu`` the mean
  and ``S`` the Ledoit-Wolf covariance of the same returns; all cash when no asset has a
  positive mean.

:func:`banded_targets` then turns desired weights into the targets an account executes under the
allocator environment's rebalancing band (:mod:`envs.portfolio`): asset ``a`` is traded at the
open of ``t + 1`` only when its market is open then and its desired weight differs by at least
``band`` from its weight at the close of ``t`` (which drifts with prices); otherwise it keeps its
units. :func:`backtest.run` trades an asset only on bars where its target *changes*, so a rebalance
back to the same desired weight is written as the adjacent float toward 0 (one unit in the last
place: a difference of about 1e-17 of equity), alternately, and the backtest re-trades it.
``buy_and_hold`` is equal weight at the first bar, never rebalanced: a constant target, which
the engine fills once and then lets drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market.rebalance import Costs, advance_nb

__all__ = [
    "BASELINES",
    "BUY_AND_HOLD",
    "EQUAL_WEIGHT",
    "MAX_SHARPE",
    "MIN_VARIANCE",
    "BaselineOptions",
    "account_targets",
    "banded_targets",
    "baseline_targets",
    "capped",
    "desired_weights",
    "max_sharpe_weights",
    "min_variance_weights",
]

EQUAL_WEIGHT = "equal_weight"
BUY_AND_HOLD = "buy_and_hold"
MIN_VARIANCE = "min_variance"
MAX_SHARPE = "max_sharpe"
BASELINES: tuple[str, ...] = (EQUAL_WEIGHT, BUY_AND_HOLD, MIN_VARIANCE, MAX_SHARPE)
"""Every baseline :func:`baseline_targets` computes, in report order."""


@dataclass(frozen=True)
class BaselineOptions:
    """How the baselines trade: the same caps, band and costs as the agent.

    Attributes:
        max_weight: cap on each asset's weight, in ``(0, 1]``.
        gross_cap: cap on the sum of the weights, in ``(0, 1]``.
        band: the rebalancing band (a fraction of equity, ``>= 0``).
        window: past returns per estimate of the rolling baselines (``>= 2``).
        costs: commission, slippage and minimum fee per fill.
        initial_capital: the account at the first bar.
    """

    max_weight: float = 1.0
    gross_cap: float = 1.0
    band: float = 0.0
    window: int = 60
    costs: Costs = Costs()
    initial_capital: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 < self.max_weight <= 1.0 and 0.0 < self.gross_cap <= 1.0):
            raise ValueError(
                f"max_weight and gross_cap must lie in (0, 1], got {self.max_weight!r}, {self.gross_cap!r}"
            )
        if not (math.isfinite(self.band) and self.band >= 0.0):
            raise ValueError(f"band must be a fraction of equity >= 0, got {self.band!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < 2:
            raise ValueError(f"window must be at least 2 returns, got {self.window!r}")
        if not (math.isfinite(self.initial_capital) and self.initial_capital > 0):
            raise ValueError(f"initial_capital must be positive, got {self.initial_capital!r}")


def capped(weights: np.ndarray, max_weight: float, gross_cap: float) -> np.ndarray:
    """``weights`` (long only, last axis assets) with each capped at ``max_weight`` and the sum
    scaled down to ``gross_cap`` where it exceeds it."""
    out = np.minimum(np.clip(weights, 0.0, None), max_weight)
    total = out.sum(axis=-1, keepdims=True)
    scale = np.where(total > gross_cap, gross_cap / np.where(total > 0, total, 1.0), 1.0)
    return np.asarray(out * scale)


def _log_returns(close: np.ndarray) -> np.ndarray:
    """Close-to-close log returns, ``(T, N)``; row 0 is 0 (no earlier close)."""
    out = np.zeros_like(close, dtype=np.float64)
    out[1:] = np.log(close[1:] / close[:-1])
    return out


def _covariance(returns: np.ndarray) -> np.ndarray:
    from sklearn.covariance import LedoitWolf

    cov: np.ndarray = LedoitWolf().fit(returns).covariance_
    return cov


def _solve(objective: object, n: int, budget: float, max_weight: float, start: np.ndarray) -> np.ndarray:
    from scipy.optimize import minimize

    result = minimize(
        objective,
        start,
        method="SLSQP",
        bounds=[(0.0, max_weight)] * n,
        constraints=[{"type": "eq", "fun": lambda w: w.sum() - budget}],
        options={"maxiter": 200, "ftol": 1e-12},
    )
    weights = np.clip(np.asarray(result.x, dtype=np.float64), 0.0, max_weight)
    return weights


def _rolling(
    close: np.ndarray, window: int, max_weight: float, gross_cap: float, kind: str, first: int
) -> np.ndarray:
    n_rows, n = close.shape
    budget = min(1.0, n * max_weight, gross_cap)
    equal = np.full(n, budget / n)
    out = np.tile(equal, (n_rows, 1))
    returns = _log_returns(close)
    for t in range(max(window, first), n_rows):
        past = returns[t - window + 1 : t + 1]  # the returns known at the close of t
        cov = _covariance(past)
        if kind == MIN_VARIANCE:
            out[t] = _solve(lambda w, c=cov: float(w @ c @ w) * 1e4, n, budget, max_weight, equal)
            continue
        mu = past.mean(axis=0)
        if not (mu > 0).any():
            out[t] = 0.0  # nothing is expected to grow: hold cash
            continue

        def negative_sharpe(w: np.ndarray, c: np.ndarray = cov, m: np.ndarray = mu) -> float:
            return -float(w @ m) / math.sqrt(max(float(w @ c @ w), 1e-18))

        out[t] = _solve(negative_sharpe, n, budget, max_weight, equal)
    return capped(out, max_weight, gross_cap)


def min_variance_weights(
    close: np.ndarray, *, window: int = 60, max_weight: float = 1.0, gross_cap: float = 1.0, first: int = 0
) -> np.ndarray:
    """Desired weights ``(T, N)`` of the long-only minimum-variance portfolio, re-estimated at every
    bar from the Ledoit-Wolf covariance of the last ``window`` log returns up to it (row ``t``
    reads ``close[: t + 1]`` only); equal weights before ``window`` returns exist and on the rows
    before ``first`` (not estimated: pass the first row you need)."""
    return _rolling(np.asarray(close, dtype=np.float64), window, max_weight, gross_cap, MIN_VARIANCE, first)


def max_sharpe_weights(
    close: np.ndarray, *, window: int = 60, max_weight: float = 1.0, gross_cap: float = 1.0, first: int = 0
) -> np.ndarray:
    """Desired weights ``(T, N)`` of the long-only maximum-Sharpe portfolio of the mean and the
    Ledoit-Wolf covariance of the last ``window`` log returns up to each bar (row ``t`` reads
    ``close[: t + 1]`` only); all cash when no asset's mean is positive, equal weights before
    ``window`` returns exist and on the rows before ``first`` (not estimated)."""
    return _rolling(np.asarray(close, dtype=np.float64), window, max_weight, gross_cap, MAX_SHARPE, first)


def desired_weights(name: str, close: np.ndarray, options: BaselineOptions, *, first: int = 0) -> np.ndarray:
    """Baseline ``name``'s desired weights ``(T, N)`` over ``close`` (``(T, N)`` prices), estimated
    from row ``first`` on (the rows before only feed the rolling windows).

    Raises:
        ValueError: an unknown baseline.
    """
    n_rows, n = close.shape
    if name in (EQUAL_WEIGHT, BUY_AND_HOLD):
        return capped(np.full((n_rows, n), 1.0 / n), options.max_weight, options.gross_cap)
    if name == MIN_VARIANCE:
        return min_variance_weights(
            close,
            window=options.window,
            max_weight=options.max_weight,
            gross_cap=options.gross_cap,
            first=first,
        )
    if name == MAX_SHARPE:
        return max_sharpe_weights(
            close,
            window=options.window,
            max_weight=options.max_weight,
            gross_cap=options.gross_cap,
            first=first,
        )
    raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")


def banded_targets(
    desired: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    tradable: np.ndarray,
    *,
    band: float,
    costs: Costs,
    gross_cap: float = 1.0,
    initial_capital: float = 1.0,
) -> np.ndarray:
    """The targets an account executes when it follows ``desired`` under the rebalancing band.

    Row ``t`` is decided at the close of ``t`` and filled at the open of ``t + 1`` (what
    :func:`backtest.run` does with ``execution="next_open"``); the last row repeats the target in
    force. Asset ``a`` gets a new target at ``t`` when its market is open at ``t + 1`` and
    ``|desired[t, a] - weight at the close of t| >= band``; otherwise its target stays. The
    weights drift with prices and costs as in the account of :func:`market.rebalance.advance_nb`
    (the same kernel). If the targets would sum to more than ``gross_cap``, the new ones are
    scaled down to fit (as the environment does).

    Returns:
        ``(T, N)`` float64 targets, ready for :func:`backtest.run`.

    Raises:
        ValueError: arrays of different shapes, or fewer than 2 rows.
    """
    desired = np.asarray(desired, dtype=np.float64)
    if desired.shape != np.shape(close):
        raise ValueError(f"desired {desired.shape} and close {np.shape(close)} must share one shape")
    return account_targets(
        lambda t, _: desired[t],
        open_,
        close,
        tradable,
        band=band,
        costs=costs,
        gross_cap=gross_cap,
        initial_capital=initial_capital,
        retrade=True,
    )


def account_targets(
    decide: Callable[[int, np.ndarray], np.ndarray],
    open_: np.ndarray,
    close: np.ndarray,
    tradable: np.ndarray,
    *,
    band: float,
    costs: Costs,
    gross_cap: float = 1.0,
    initial_capital: float = 1.0,
    retrade: bool = False,
) -> np.ndarray:
    """The targets an account executes when, at the close of each bar ``t`` but the last, it asks
    ``decide(t, weights)`` for its desired asset weights (``weights``: each asset's and then
    cash's weight at that close, ``(N + 1,)``: what a policy observes) and trades them at the open
    of ``t + 1`` under the environment's rules (:mod:`envs.portfolio`): an asset is traded when its
    market is open at ``t + 1``, its desired weight differs from its target last executed, and by
    at least ``band`` from its weight; targets beyond ``gross_cap`` are scaled down. With
    ``retrade`` an asset whose desired weight equals its last target is traded back to it once its
    weight drifts by ``band`` (written as the adjacent float, see the module docstring): the
    rebalancing baselines; without it, the environment's rule exactly (an agent).

    Returns:
        ``(T, N)`` float64 targets, ready for :func:`backtest.run` on the same rows (the last row
        repeats the target in force).

    Raises:
        ValueError: arrays of different shapes, or fewer than 2 rows.
    """
    open_ = np.ascontiguousarray(open_, dtype=np.float64)
    close = np.ascontiguousarray(close, dtype=np.float64)
    tradable = np.asarray(tradable, dtype=bool)
    if not (open_.shape == close.shape == tradable.shape) or close.ndim != 2 or close.shape[0] < 2:
        raise ValueError(
            f"open {open_.shape}, close {close.shape} and tradable {tradable.shape} must share one "
            "(rows >= 2, assets) shape"
        )
    n_rows, n = close.shape
    targets = np.zeros((n_rows, n))
    account = np.array([initial_capital, initial_capital, 0.0])
    units, weight, prev = np.zeros(n), np.zeros(n), np.zeros(n)
    equity, returns, held = np.empty(1), np.empty(1), np.empty((1, n))
    fill_bar, fill_asset = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    fill_units, fill_price, fill_fee = np.empty(n), np.empty(n), np.empty(n)
    value = float(initial_capital)
    row = np.empty((1, n))
    for t in range(n_rows - 1):
        scale = 1.0 / value if value > 0 else 0.0
        now = units * close[t] * scale
        weights = np.append(now, account[0] * scale)
        wanted = np.asarray(decide(t, weights), dtype=np.float64)
        moving = tradable[t + 1] & (np.abs(wanted - now) >= band) & (value > 0)
        if not retrade:
            moving &= wanted != prev
        new = np.where(moving, wanted, prev)
        kept = float(np.abs(new[~moving]).sum())
        traded = float(np.abs(new[moving]).sum())
        if kept + traded > gross_cap and traded > 0.0:
            new = np.where(moving, new * (max(gross_cap - kept, 0.0) / traded), new)
        if retrade:
            same = moving & (new == prev) & (new != 0.0)
            new[same] = np.nextafter(new[same], 0.0)  # back to the same weight: the engine needs a change
        row[0] = new
        advance_nb(
            open_, close, row, False, costs.rate, float(costs.min_fee), t + 1, t + 2, t,
            account, units, weight, prev, equity, returns, held,
            fill_bar, fill_asset, fill_units, fill_price, fill_fee, 0,
        )  # fmt: skip
        value = float(equity[0])
        targets[t] = new
    targets[-1] = targets[-2]
    return targets


def baseline_targets(
    open_: np.ndarray,
    close: np.ndarray,
    tradable: np.ndarray,
    options: BaselineOptions,
    *,
    index: pd.DatetimeIndex,
    assets: tuple[str, ...],
    start: int = 0,
    names: tuple[str, ...] = BASELINES,
) -> Mapping[str, pd.DataFrame]:
    """Each baseline's executed targets on rows ``start ..`` of the given prices.

    The rolling baselines are estimated on every row (so the rows before ``start`` feed their
    first windows: past data only); the account starts flat at ``start`` with
    ``options.initial_capital``.

    Returns:
        ``{name: DataFrame}`` indexed by ``index[start:]``, one column per asset: targets for
        :func:`backtest.run` on the same rows with ``execution="next_open"``.

    Raises:
        ValueError: an unknown baseline name or inconsistent shapes.
    """
    rows = slice(start, None)
    out: dict[str, pd.DataFrame] = {}
    for name in names:
        desired = desired_weights(name, close, options, first=start)[rows]
        if name == BUY_AND_HOLD:
            targets = np.tile(desired[0], (desired.shape[0], 1))
        else:
            targets = banded_targets(
                desired,
                open_[rows],
                close[rows],
                tradable[rows],
                band=options.band,
                costs=options.costs,
                gross_cap=options.gross_cap,
                initial_capital=options.initial_capital,
            )
        out[name] = pd.DataFrame(targets, index=index[rows], columns=list(assets))
    return out
