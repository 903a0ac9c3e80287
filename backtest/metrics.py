"""Performance metrics of a backtest: :func:`performance_metrics`.

All metrics are computed from per-bar simple net returns ``r_1 .. r_n`` (one per bar, as in
:attr:`backtest.BacktestResult.returns`), the held target weights and the round trips, with
``P = periods_per_year`` bars per year:

==========================  ==================================================================
``total_return``            ``prod(1 + r) - 1``
``annual_return``           CAGR: ``(1 + total_return) ** (P / n) - 1`` (``-1`` once wealth <= 0)
``volatility``              ``std(r, ddof=1) * sqrt(P)``
``sharpe``                  ``mean(r) / std(r, ddof=1) * sqrt(P)`` (risk-free rate 0)
``sortino``                 ``mean(r) / sqrt(mean(min(r, 0) ** 2)) * sqrt(P)``
``calmar``                  ``annual_return / |max_drawdown|``
``max_drawdown``            most negative ``wealth / running_peak - 1`` (a fraction <= 0); the
                            wealth path starts at 1 before ``r_1``
``max_drawdown_duration``   longest run of consecutive bars spent below the running peak
``var_95``                  historical 95% value at risk per bar: the 5% quantile of ``r``
                            (numpy's linear interpolation), a return, negative for a loss
``cvar_95``                 mean of the returns ``<= var_95`` (expected shortfall, per bar)
``win_rate``                share of round trips whose net ``return`` is ``> 0``
``profit_factor``           sum of positive trade returns / ``|sum of negative trade returns|``
``turnover``                mean per-bar traded weight ``sum_assets |w_t - w_(t-1)|`` times
                            ``P``: how many times a year the book is traded (one buy of the full
                            capital and one sale count 2). ``w`` is the held target weight, so
                            re-sizing a drifted position is counted at its target change.
``exposure``                share of bars with a nonzero held position in any asset
``trades``                  number of round trips (rows of ``trades``, open ones included)
==========================  ==================================================================

Edge cases never raise: with fewer than two returns the dispersion metrics are NaN; a zero
standard deviation (up to rounding noise) gives ``sharpe = NaN`` and ``volatility = 0``; no
losing bar gives ``sortino = NaN``; no drawdown gives ``calmar = NaN`` and ``max_drawdown = 0``;
no trades give ``win_rate = NaN``, ``profit_factor = NaN`` and ``trades = 0``; winners without losers give
``profit_factor = inf``. Empty returns give NaN everywhere except the counts (0).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from backtest import _kernels as _k

METRIC_NAMES: tuple[str, ...] = (
    "total_return",
    "annual_return",
    "volatility",
    "sharpe",
    "sortino",
    "calmar",
    "max_drawdown",
    "max_drawdown_duration",
    "var_95",
    "cvar_95",
    "win_rate",
    "profit_factor",
    "turnover",
    "exposure",
    "trades",
)
_PREFILTER_MIN_VALUES = 1 << 16  # below this a partial sort of everything is as quick
_PREFILTER_STRIDE = 64
_PREFILTER_MARGIN = 0.02  # the sample's cut sits at q + 2%: ~12 standard errors of the sample


def _as_weights(positions: pd.Series | pd.DataFrame | np.ndarray | None, n: int) -> np.ndarray:
    if positions is None:
        return np.zeros((n, 1))
    arr = np.asarray(positions, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr.reshape(-1, 1)
    if arr.shape[0] != n:
        raise ValueError(
            f"positions have {arr.shape[0]} rows but returns have {n}: pass the held positions "
            "of the same bars (BacktestResult.positions)"
        )
    return arr  # NaN counts as flat in the kernel: no copy


def _lower_tail(values: np.ndarray, q: float) -> tuple[float, float]:
    """``(np.quantile(values, q), mean of the values <= it)`` for a small ``q``, to the last bit.

    The quantile is numpy's ``linear`` method, with numpy's arithmetic, from one partial sort;
    ``np.quantile`` itself also partitions around the minimum and maximum and checks for NaN,
    which takes several times as long on long series. On long series the partial sort runs only
    on the values at or below a cut taken from a strided sample a little above ``q``: when the
    cut keeps more values than the quantile needs (almost always) the needed order statistics
    and every value of the tail are among them, in their original order; otherwise every value
    is used.
    """
    n = values.shape[0]
    virtual = (n - 1) * q  # numpy's virtual index for method "linear"
    if virtual >= n - 1:
        lo = hi = n - 1
    elif virtual < 0:
        lo = hi = 0
    else:
        lo = math.floor(virtual)
        hi = lo + 1
    pool = values
    if n >= _PREFILTER_MIN_VALUES:
        sample = values[::_PREFILTER_STRIDE]
        j = min(sample.shape[0] - 1, int(sample.shape[0] * (q + _PREFILTER_MARGIN)))
        kept = values[values <= np.partition(sample, j)[j]]
        if kept.shape[0] > hi:
            pool = kept
    part = np.partition(pool, [lo, hi] if hi != lo else lo)
    a, b = float(part[lo]), float(part[hi])
    gamma = virtual - lo
    diff = b - a
    quantile = b - diff * (1.0 - gamma) if gamma >= 0.5 else a + diff * gamma
    return quantile, float(pool[pool <= quantile].mean())


def performance_metrics(
    returns: pd.Series | np.ndarray,
    *,
    positions: pd.Series | pd.DataFrame | np.ndarray | None = None,
    trades: pd.DataFrame | None = None,
    periods_per_year: float = 252.0,
) -> dict[str, float]:
    """Risk and performance metrics of per-bar ``returns``; the module docstring defines each.

    Args:
        returns: per-bar simple net returns (fractions, ``0.01`` is 1%), one per bar.
        positions: held weights per bar (Series, or DataFrame with one column per asset) for
            ``turnover`` and ``exposure``; ``None`` counts as always flat.
        trades: round trips with a ``return`` column (as :attr:`BacktestResult.trades`), for
            ``win_rate``, ``profit_factor`` and ``trades``; ``None`` means no trades.
        periods_per_year: bars per year used to annualise (252 for daily equity bars).

    Returns:
        A dict of floats keyed by :data:`METRIC_NAMES`, in that order.

    Raises:
        ValueError: when ``periods_per_year`` is not positive, ``returns`` contain NaN, or the
            positions do not have one row per return.
    """
    if not (isinstance(periods_per_year, int | float) and math.isfinite(periods_per_year)) or (
        periods_per_year <= 0
    ):
        raise ValueError(f"periods_per_year must be a positive number, got {periods_per_year!r}")
    r = np.ascontiguousarray(np.asarray(returns, dtype=np.float64).ravel())
    mean = float(r.mean()) if r.shape[0] else math.nan
    if math.isnan(mean) and np.isnan(r).any():  # a NaN makes the mean NaN: one cheap pass first
        raise ValueError("returns contain NaN: drop or fill them (e.g. returns.fillna(0.0)) first")
    n = r.shape[0]
    ppy = float(periods_per_year)
    nan = math.nan
    out: dict[str, float] = dict.fromkeys(METRIC_NAMES, nan)

    weights = _as_weights(positions, n)
    trade_returns = (
        np.asarray(trades["return"], dtype=np.float64) if trades is not None and len(trades) else np.empty(0)
    )
    out["trades"] = float(trade_returns.shape[0])
    if trade_returns.shape[0]:
        out["win_rate"] = float(np.mean(trade_returns > 0.0))
        gains = float(trade_returns[trade_returns > 0.0].sum())
        losses = float(-trade_returns[trade_returns < 0.0].sum())
        if losses > 0.0:
            out["profit_factor"] = gains / losses
        elif gains > 0.0:
            out["profit_factor"] = math.inf
    if n == 0:
        out["max_drawdown_duration"] = 0.0
        out["turnover"] = nan
        out["exposure"] = nan
        return out

    traded, exposed = _k.position_stats_nb(weights)
    out["turnover"] = float(traded) / n * ppy
    out["exposure"] = exposed / n

    wealth, mdd, duration, downside_ms = _k.wealth_stats_nb(r)
    out["total_return"] = wealth - 1.0
    out["annual_return"] = wealth ** (ppy / n) - 1.0 if wealth > 0.0 else -1.0
    out["max_drawdown"] = float(mdd)
    out["max_drawdown_duration"] = float(duration)
    if mdd < 0.0:
        out["calmar"] = out["annual_return"] / abs(mdd)
    out["var_95"], out["cvar_95"] = _lower_tail(r, 0.05)
    downside = math.sqrt(downside_ms)
    if downside > 0.0:
        out["sortino"] = mean / downside * math.sqrt(ppy)
    if n >= 2:
        std = float(r.std(ddof=1))
        out["volatility"] = 0.0
        if std > 1e-12 * abs(mean):  # a constant series has a rounding-noise std, not a real one
            out["volatility"] = std * math.sqrt(ppy)
            out["sharpe"] = mean / std * math.sqrt(ppy)
    return out
