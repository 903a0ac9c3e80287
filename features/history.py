"""History invariance: how many bars an indicator needs before it forgets where the series starts.

A served model is sent the last bars of a series, not its whole history, so every feature it uses
must have the same value whether it is computed on the full history or on the last few bars. For
each indicator kind :func:`indicator_horizon` says how many bars ``h`` that takes: computed on
the last ``h`` bars ending at ``t``, the value at ``t`` equals the full-history value to
:data:`INVARIANCE_RTOL` relative (to the column's scale, see :func:`history_mismatch`).

* Windowed indicators (SMA, Bollinger, Stochastic, CCI, Williams %R, MFI, returns, rolling
  statistics, calendar) read a fixed number of bars: their horizon is that window, exactly.
* Exponential ones (EMA, MACD, Wilder's RSI/ATR/ADX smoothing) seed from their first bars and
  then forget the seed geometrically, by ``(1 - alpha)`` a bar. Their horizon is the warm-up
  plus the bars after which the seed's weight is below :data:`DECAY_TOLERANCE` (1e-9: a seed
  that is off by 1000x the tolerance still lands inside it). Smoothing applied twice (MACD's
  signal line, ADX's average of DX) forgets as ``(k + 1) (1 - alpha)^k``.
* Cumulative levels (OBV's level, any running sum) never forget: their horizon is ``None`` and
  a feature set meant for serving refuses them (use ``obv_zscore``, OBV's z-score over a
  window, which is stationary and windowed).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

DECAY_TOLERANCE = 1e-9
"""Weight of an exponential indicator's seed below which it is taken as forgotten."""

INVARIANCE_RTOL = 1e-6
"""Relative tolerance of the history-invariance contract."""

_RETURN_SOURCES = ("ret", "log_ret")


def decay_bars(alpha: float, *, order: int = 1, tolerance: float = DECAY_TOLERANCE) -> int:
    """Bars ``k`` after which a seed smoothed with factor ``alpha`` weighs at most ``tolerance``.

    ``order`` 1 is one exponential smoothing (weight ``(1 - alpha)^k``); ``order`` 2 a smoothing
    of a smoothed series (weight ``(k + 1) (1 - alpha)^k``).

    Raises:
        ValueError: ``alpha`` outside ``(0, 1]``, ``order`` not 1 or 2, or ``tolerance`` not in (0, 1).
    """
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if not 0.0 < tolerance < 1.0:
        raise ValueError(f"tolerance must be in (0, 1), got {tolerance!r}")
    if alpha == 1.0:
        return 0
    log_beta = math.log1p(-alpha)
    k = max(math.ceil(math.log(tolerance) / log_beta), 0)
    if order == 2:
        while math.log(k + 1) + k * log_beta > math.log(tolerance):
            k += 1
    return k


def _wilder(period: int) -> float:
    return 1.0 / period


def _ema(period: int) -> float:
    return 2.0 / (period + 1)


def indicator_warmup(kind: str, params: Mapping[str, Any]) -> int:
    """Leading rows an indicator of ``kind`` leaves NaN (TA-Lib's lookback for its kinds).

    Raises:
        ValueError: an unknown kind.
    """
    p = params
    ret_source = 1 if p.get("source") in _RETURN_SOURCES else 0
    warmups = {
        "sma": lambda: int(p["period"]) - 1,
        "ema": lambda: int(p["period"]) - 1,
        "rsi": lambda: int(p["period"]),
        "macd": lambda: int(p["slow"]) + int(p["signal"]) - 2,
        "bollinger": lambda: int(p["period"]) - 1,
        "atr": lambda: int(p["period"]),
        "obv": lambda: 0,
        "obv_zscore": lambda: int(p["window"]) - 1,
        "roc": lambda: int(p["period"]),
        "stoch": lambda: int(p["fastk"]) + int(p["slowk"]) + int(p["slowd"]) - 3,
        "adx": lambda: 2 * int(p["period"]) - 1,
        "cci": lambda: int(p["period"]) - 1,
        "willr": lambda: int(p["period"]) - 1,
        "mfi": lambda: int(p["period"]),
        "returns": lambda: int(p["n"]),
        "log_returns": lambda: int(p["n"]),
        "rolling_volatility": lambda: int(p["window"]),
        "rolling_zscore": lambda: int(p["window"]) - 1 + ret_source,
        "rolling_skew": lambda: int(p["window"]) - 1 + ret_source,
        "rolling_kurt": lambda: int(p["window"]) - 1 + ret_source,
        "volume_zscore": lambda: int(p["window"]) - 1,
        "calendar_features": lambda: 0,
    }
    if kind not in warmups:
        raise ValueError(f"no warm-up is known for indicator kind {kind!r}")
    return warmups[kind]()


def indicator_horizon(kind: str, params: Mapping[str, Any]) -> int | None:
    """Bars an indicator of ``kind`` with resolved ``params`` needs to be history-invariant.

    Returns ``None`` for indicators that never forget the start of the series (``obv``).

    Raises:
        ValueError: an unknown kind.
    """
    p = params
    windowed = {
        "sma": lambda: int(p["period"]),
        "bollinger": lambda: int(p["period"]),
        "cci": lambda: int(p["period"]),
        "willr": lambda: int(p["period"]),
        "mfi": lambda: int(p["period"]) + 1,
        "roc": lambda: int(p["period"]) + 1,
        "returns": lambda: int(p["n"]) + 1,
        "log_returns": lambda: int(p["n"]) + 1,
        "stoch": lambda: int(p["fastk"]) + int(p["slowk"]) + int(p["slowd"]) - 2,
        "rolling_volatility": lambda: int(p["window"]) + 1,
        "volume_zscore": lambda: int(p["window"]),
        "obv_zscore": lambda: int(p["window"]),
        "calendar_features": lambda: 1,
    }
    if kind in windowed:
        return windowed[kind]()
    if kind in ("rolling_zscore", "rolling_skew", "rolling_kurt"):
        return int(p["window"]) + (1 if p["source"] in _RETURN_SOURCES else 0)
    if kind == "ema":
        return int(p["period"]) + decay_bars(_ema(int(p["period"])))
    if kind == "rsi":
        return int(p["period"]) + 1 + decay_bars(_wilder(int(p["period"])))
    if kind == "atr":
        return int(p["period"]) + 1 + decay_bars(_wilder(int(p["period"])))
    if kind == "adx":
        return 2 * int(p["period"]) + decay_bars(_wilder(int(p["period"])), order=2)
    if kind == "macd":
        slowest = _ema(max(int(p["slow"]), int(p["signal"])))
        return int(p["slow"]) + int(p["signal"]) - 1 + decay_bars(slowest, order=2)
    if kind == "obv":
        return None
    raise ValueError(f"no history horizon is known for indicator kind {kind!r}")


def history_mismatch(
    full: pd.DataFrame, cut: pd.DataFrame, *, from_row: int = 0, rtol: float = INVARIANCE_RTOL
) -> dict[str, float]:
    """Columns where features built on a later start (``cut``) differ from the full-history ones.

    ``cut`` holds the features of the bars ``full.index[len(full) - len(cut):]``; rows of ``cut``
    from ``from_row`` on are compared. The error of a value is ``|cut - full|`` over
    ``max(|full|, scale)``, where ``scale`` is the column's median absolute value over ``full``
    (so that columns crossing zero, like MACD's histogram, are judged against their size).

    Returns:
        ``{column: worst relative error}`` for the columns whose worst error exceeds ``rtol``
        (a NaN on one side only counts as infinite); empty when the contract holds.
    """
    tail = full.iloc[len(full) - len(cut) :].iloc[from_row:]
    part = cut.iloc[from_row:]
    out: dict[str, float] = {}
    for column in full.columns:
        a = part[column].to_numpy(dtype="float64")
        b = tail[column].to_numpy(dtype="float64")
        scale = float(np.nanmedian(np.abs(full[column].to_numpy(dtype="float64")))) if len(full) else 0.0
        denom = np.maximum(np.abs(b), scale if np.isfinite(scale) else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.where(np.isnan(a) & np.isnan(b), 0.0, np.abs(a - b) / np.where(denom > 0, denom, 1.0))
        err = np.where(np.isnan(err), np.inf, err)
        worst = float(err.max()) if len(err) else 0.0
        if worst > rtol:
            out[str(column)] = worst
    return out
