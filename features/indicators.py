"""Technical indicators: TA-Lib's definitions on numpy arrays or pandas Series, no I/O.

Every function is pure. Each price/volume input may be a 1-D numpy array or a pandas Series;
the result is of the same kind (a Series keeps the input's index; with several inputs, the
index of the first Series among them), float64, one value per input row, and multi-output
indicators return a tuple. The numbers come from the numba kernels in
:mod:`features._kernels`; this module validates the inputs and wraps the results.

Conventions
-----------

* **TA-Lib parity.** ``sma, ema, rsi, macd, bollinger, atr, obv, roc, stoch, adx, cci, willr,
  mfi`` follow TA-Lib's C code (defaults included) and agree with ``talib`` to about 1e-12
  relative, with NaN in exactly the same rows. As in TA-Lib's Python wrapper, leading NaN rows
  (for example the warm-up of another indicator fed in) are skipped: the computation starts at
  the first row where every input is a number, and the warm-up is counted from there.
* **Warm-up.** Each docstring gives the first row (0-based, counted from the first valid row)
  that has a value; the rows before it are NaN.
* **No look-ahead.** Row ``i`` of every output depends only on input rows ``<= i``: computing on
  ``x[:cut]`` gives the same rows as computing on all of ``x`` and cutting afterwards.
* **Errors.** Bad input raises ``ValueError`` with a message that says what to pass: an input
  that is not a 1-D numeric array or Series, inputs of different lengths or indexes, a period
  that is not an integer or is below its minimum.

Units: prices in the input's units; ``rsi, stoch, willr, adx, mfi`` in points on a 0-100 scale
(``willr`` on -100..0); ``roc`` in percent; returns and volatility as fractions (0.01 = 1 %).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from features import _kernels as _k
from market.bars import Timeframe, as_utc_index

__all__ = [
    "adx",
    "atr",
    "bollinger",
    "calendar_features",
    "cci",
    "ema",
    "log_returns",
    "macd",
    "mfi",
    "obv",
    "returns",
    "roc",
    "rolling_kurt",
    "rolling_skew",
    "rolling_volatility",
    "rolling_zscore",
    "rsi",
    "sma",
    "stoch",
    "volume_zscore",
    "willr",
]

T = TypeVar("T", np.ndarray, pd.Series)


# --------------------------------------------------------------------------- boundary helpers


class _Inputs:
    """Validated inputs: contiguous float64 arrays, the index to give back, the first valid row."""

    __slots__ = ("arrays", "index", "n")

    def __init__(self, arrays: list[np.ndarray], index: pd.Index | None, n: int) -> None:
        self.arrays = arrays
        self.index = index
        self.n = n


def _as_array(func: str, arg: str, value: Any) -> tuple[np.ndarray, pd.Index | None]:
    if isinstance(value, pd.DataFrame):
        raise ValueError(f"{func}: {arg} is a DataFrame; pass one column, e.g. bars['{arg}']")
    if isinstance(value, pd.Series):
        index: pd.Index | None = value.index
        if not (pd.api.types.is_numeric_dtype(value.dtype) and not pd.api.types.is_bool_dtype(value.dtype)):
            raise ValueError(f"{func}: {arg} has dtype {value.dtype}; pass numbers (float64)")
        arr = value.to_numpy(dtype=np.float64, na_value=np.nan)
    elif isinstance(value, np.ndarray):
        index = None
        if value.dtype.kind not in "iuf":
            raise ValueError(f"{func}: {arg} has dtype {value.dtype}; pass a numeric (float64) array")
        arr = value
    else:
        raise ValueError(
            f"{func}: {arg} is a {type(value).__name__}; pass a 1-D numpy array or a pandas Series"
        )
    if arr.ndim != 1:
        raise ValueError(f"{func}: {arg} has shape {arr.shape}; pass a 1-D array (one value per bar)")
    return np.ascontiguousarray(arr, dtype=np.float64), index


def _inputs(func: str, **named: Any) -> _Inputs:
    arrays: list[np.ndarray] = []
    index: pd.Index | None = None
    n = -1
    first = ""
    for arg, value in named.items():
        arr, idx = _as_array(func, arg, value)
        if n < 0:
            n, first = arr.shape[0], arg
        elif arr.shape[0] != n:
            raise ValueError(
                f"{func}: {arg} has {arr.shape[0]} rows but {first} has {n}; pass inputs of equal length"
            )
        if idx is not None:
            if index is None:
                index = idx
            elif not idx.equals(index):
                raise ValueError(
                    f"{func}: the Series' indexes differ; align them first (e.g. from one frame)"
                )
        arrays.append(arr)
    return _Inputs(arrays, index, n)


def _period(func: str, arg: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{func}: {arg} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{func}: {arg} must be >= {minimum}; got {value}")
    return int(value)


def _begin(inp: _Inputs) -> int:
    """First row where every input is a number (TA-Lib wrapper's ``check_begidx``)."""
    return max((_k.first_valid_nb(a) for a in inp.arrays), default=0)


def _trimmed(inp: _Inputs) -> tuple[int, list[np.ndarray]]:
    begin = _begin(inp)
    if begin == 0:
        return 0, inp.arrays
    return begin, [a[begin:] for a in inp.arrays]


def _pad(out: np.ndarray, begin: int) -> np.ndarray:
    if begin == 0:
        return out
    full = np.empty(begin + out.shape[0])
    full[:begin] = np.nan
    full[begin:] = out
    return full


def _wrap(out: np.ndarray, inp: _Inputs, name: str) -> Any:
    if inp.index is None:
        return out
    return pd.Series(out, index=inp.index, name=name, copy=False)


def _one(inp: _Inputs, name: str, kernel: Any, *args: Any) -> Any:
    begin, arrays = _trimmed(inp)
    return _wrap(_pad(kernel(*arrays, *args), begin), inp, name)


def _many(inp: _Inputs, names: tuple[str, ...], kernel: Any, *args: Any) -> tuple[Any, ...]:
    begin, arrays = _trimmed(inp)
    outs = kernel(*arrays, *args)
    return tuple(_wrap(_pad(o, begin), inp, nm) for o, nm in zip(outs, names, strict=True))


# --------------------------------------------------------------------------- TA-Lib indicators


def sma(x: T, period: int) -> T:
    """Simple moving average: the mean of the last ``period`` values (TA-Lib ``SMA``).

    Units of ``x``. Warm-up: first value at row ``period - 1``. The moving sum is compensated
    and re-summed periodically, so it stays accurate to ~1e-15 relative on any length.

    Raises:
        ValueError: ``x`` not a 1-D numeric array/Series; ``period`` not an integer >= 1.
    """
    p = _period("sma", "period", period, 1)
    inp = _inputs("sma", x=x)
    return _one(inp, f"sma_{p}", _k.sma_nb, p)


def ema(x: T, period: int) -> T:
    """Exponential moving average (TA-Lib ``EMA``): seeded at row ``period - 1`` with the SMA of
    the first ``period`` values, then ``e[i] = e[i-1] + k * (x[i] - e[i-1])``, ``k = 2 / (period + 1)``.

    Units of ``x``. Warm-up: first value at row ``period - 1``.

    Raises:
        ValueError: ``x`` not a 1-D numeric array/Series; ``period`` not an integer >= 1.
    """
    p = _period("ema", "period", period, 1)
    inp = _inputs("ema", x=x)
    return _one(inp, f"ema_{p}", _k.ema_nb, p)


def rsi(close: T, period: int = 14) -> T:
    """Wilder's Relative Strength Index (TA-Lib ``RSI``), 0-100.

    Average gain ``G`` and loss ``L`` start as the means of the first ``period`` close-to-close
    changes, then ``G = (G * (period - 1) + gain) / period`` (same for ``L``);
    ``RSI = 100 * G / (G + L)``, and 0 when ``G + L`` is below 1e-8 (TA-Lib's zero test).
    Warm-up: first value at row ``period``.

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``period`` not an integer >= 2.
    """
    p = _period("rsi", "period", period, 2)
    inp = _inputs("rsi", close=close)
    return _one(inp, f"rsi_{p}", _k.rsi_nb, p)


def macd(close: T, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[T, T, T]:
    """Moving Average Convergence/Divergence (TA-Lib ``MACD``): ``(macd, signal, hist)``.

    ``macd = EMA_fast(close) - EMA_slow(close)``, ``signal = EMA_signal(macd)``,
    ``hist = macd - signal``; units of ``close``. Aligned as TA-Lib aligns it: the slow EMA is
    seeded by the SMA of the first ``slow`` closes at row ``slow - 1``, the fast EMA by the SMA of
    the ``fast`` closes ending at that same row, and the signal EMA by the SMA of the first
    ``signal`` MACD values. Warm-up: all three start at row ``slow + signal - 2`` (33 by default).

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``fast`` or ``slow`` not an integer
            >= 2, ``signal`` not an integer >= 1, or ``slow < fast``.
    """
    f = _period("macd", "fast", fast, 2)
    s = _period("macd", "slow", slow, 2)
    g = _period("macd", "signal", signal, 1)
    if s < f:
        raise ValueError(f"macd: slow ({s}) must be >= fast ({f}); swap them")
    inp = _inputs("macd", close=close)
    return _many(inp, ("macd", "macd_signal", "macd_hist"), _k.macd_nb, f, s, g)


def bollinger(close: T, period: int = 20, k: float = 2.0) -> tuple[T, T, T]:
    """Bollinger bands (TA-Lib ``BBANDS`` with ``nbdevup = nbdevdn = k``, SMA): ``(upper, middle, lower)``.

    ``middle = SMA(close, period)``, ``upper/lower = middle +/- k * std`` where ``std`` is the
    population standard deviation (ddof=0) of the last ``period`` closes; units of ``close``.
    Warm-up: first value at row ``period - 1``.

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``period`` not an integer >= 2;
            ``k`` not a finite number >= 0.
    """
    p = _period("bollinger", "period", period, 2)
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not math.isfinite(k) or k < 0:
        raise ValueError(f"bollinger: k must be a finite number >= 0 (standard deviations); got {k!r}")
    inp = _inputs("bollinger", close=close)
    kf = float(k)
    return _many(inp, ("bb_upper", "bb_middle", "bb_lower"), _k.bbands_nb, p, kf, kf)


def atr(high: T, low: T, close: T, period: int = 14) -> T:
    """Wilder's Average True Range (TA-Lib ``ATR``), in price units, >= 0.

    True range ``TR[i] = max(high - low, |high - close[i-1]|, |low - close[i-1]|)`` from row 1;
    ``ATR[period]`` is the mean of ``TR[1..period]``, then
    ``ATR[i] = (ATR[i-1] * (period - 1) + TR[i]) / period``. ``period = 1`` gives TR itself.
    Warm-up: first value at row ``period``.

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length; ``period`` not an
            integer >= 1.
    """
    p = _period("atr", "period", period, 1)
    inp = _inputs("atr", high=high, low=low, close=close)
    return _one(inp, f"atr_{p}", _k.atr_nb, p)


def obv(close: T, volume: T) -> T:
    """On-Balance Volume (TA-Lib ``OBV``), in volume units.

    Starts at ``volume[0]``; adds the bar's volume when the close rose, subtracts it when it
    fell, keeps it when unchanged. Warm-up: none (first value at row 0).

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length.
    """
    inp = _inputs("obv", close=close, volume=volume)
    return _one(inp, "obv", _k.obv_nb)


def roc(close: T, period: int = 10) -> T:
    """Rate of change in percent (TA-Lib ``ROC``): ``(close[i] / close[i - period] - 1) * 100``,
    0 where ``close[i - period]`` is 0. Warm-up: first value at row ``period``.

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``period`` not an integer >= 1.
    """
    p = _period("roc", "period", period, 1)
    inp = _inputs("roc", close=close)
    return _one(inp, f"roc_{p}", _k.roc_nb, p)


def stoch(high: T, low: T, close: T, fastk: int = 5, slowk: int = 3, slowd: int = 3) -> tuple[T, T]:
    """Slow stochastic oscillator (TA-Lib ``STOCH``, SMA smoothing): ``(k, d)``, 0-100.

    Fast %K ``= 100 * (close - LL) / (HH - LL)`` with ``HH``/``LL`` the highest high and lowest
    low of the last ``fastk`` bars (0 when ``HH == LL``); ``k`` is its ``slowk``-bar SMA and ``d``
    the ``slowd``-bar SMA of ``k``. Warm-up: both start at row ``fastk + slowk + slowd - 3``
    (8 by default).

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length; a period not an
            integer >= 1.
    """
    fk = _period("stoch", "fastk", fastk, 1)
    sk = _period("stoch", "slowk", slowk, 1)
    sd = _period("stoch", "slowd", slowd, 1)
    inp = _inputs("stoch", high=high, low=low, close=close)
    return _many(inp, ("stoch_k", "stoch_d"), _k.stoch_nb, fk, sk, sd)


def adx(high: T, low: T, close: T, period: int = 14) -> T:
    """Wilder's Average Directional Index (TA-Lib ``ADX``), 0-100.

    +DM, -DM and TR are Wilder-smoothed over ``period`` bars; ``+DI = 100 * +DM / TR``,
    ``-DI = 100 * -DM / TR``, ``DX = 100 * |+DI - -DI| / (+DI + -DI)``; ADX is the mean of the
    first ``period`` DX values, then ``ADX = (ADX * (period - 1) + DX) / period``. A bar whose TR
    or DI sum is below 1e-8 leaves ADX unchanged (TA-Lib). Warm-up: first value at row
    ``2 * period - 1`` (27 by default).

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length; ``period`` not an
            integer >= 2.
    """
    p = _period("adx", "period", period, 2)
    inp = _inputs("adx", high=high, low=low, close=close)
    return _one(inp, f"adx_{p}", _k.adx_nb, p)


def cci(high: T, low: T, close: T, period: int = 14) -> T:
    """Commodity Channel Index (TA-Lib ``CCI``), unbounded, typically within +/-300.

    With ``tp = (high + low + close) / 3``: ``(tp - mean(tp)) / (0.015 * mean|tp - mean(tp)|)``
    over the last ``period`` bars; 0 when the numerator or the mean deviation is 0.
    Warm-up: first value at row ``period - 1``.

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length; ``period`` not an
            integer >= 2.
    """
    p = _period("cci", "period", period, 2)
    inp = _inputs("cci", high=high, low=low, close=close)
    return _one(inp, f"cci_{p}", _k.cci_nb, p)


def willr(high: T, low: T, close: T, period: int = 14) -> T:
    """Williams' %R (TA-Lib ``WILLR``), -100..0.

    ``-100 * (HH - close) / (HH - LL)`` with ``HH``/``LL`` the highest high and lowest low of
    the last ``period`` bars; 0 when ``HH == LL``. Warm-up: first value at row ``period - 1``.

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length; ``period`` not an
            integer >= 2.
    """
    p = _period("willr", "period", period, 2)
    inp = _inputs("willr", high=high, low=low, close=close)
    return _one(inp, f"willr_{p}", _k.willr_nb, p)


def mfi(high: T, low: T, close: T, volume: T, period: int = 14) -> T:
    """Money Flow Index (TA-Lib ``MFI``), 0-100.

    With ``tp = (high + low + close) / 3`` and money flow ``tp * volume``, a bar's flow is
    positive when ``tp`` rose from the previous bar and negative when it fell (neither when
    unchanged); ``MFI = 100 * sum(positive) / (sum(positive) + sum(negative))`` over the last
    ``period`` bars, and 0 when that total is below 1 (TA-Lib). Warm-up: first value at row
    ``period``.

    Raises:
        ValueError: inputs not 1-D numeric arrays/Series of equal length; ``period`` not an
            integer >= 2.
    """
    p = _period("mfi", "period", period, 2)
    inp = _inputs("mfi", high=high, low=low, close=close, volume=volume)
    return _one(inp, f"mfi_{p}", _k.mfi_nb, p)


# --------------------------------------------------------------------------- statistics (no TA-Lib)


def _shifted_ratio(x: np.ndarray, n: int) -> np.ndarray:
    out = np.empty_like(x)
    m = min(n, x.shape[0])
    out[:m] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        np.divide(x[n:], x[:-n], out=out[n:])
    return out


def returns(close: T, n: int = 1) -> T:
    """Simple return over ``n`` bars, ``close[i] / close[i - n] - 1``, as a fraction (0.01 = 1 %).

    Warm-up: first value at row ``n``. A zero or NaN earlier close gives inf or NaN, as numpy does.

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``n`` not an integer >= 1.
    """
    k = _period("returns", "n", n, 1)
    inp = _inputs("returns", close=close)
    out = _shifted_ratio(inp.arrays[0], k)
    out -= 1.0
    return _wrap(out, inp, f"ret_{k}")


def log_returns(close: T, n: int = 1) -> T:
    """Log return over ``n`` bars, ``ln(close[i] / close[i - n])`` (natural log, a fraction).

    Warm-up: first value at row ``n``.

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``n`` not an integer >= 1.
    """
    k = _period("log_returns", "n", n, 1)
    inp = _inputs("log_returns", close=close)
    out = _shifted_ratio(inp.arrays[0], k)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(out, out=out)
    return _wrap(out, inp, f"logret_{k}")


def _moments(
    func: str, x: Any, window: int, minimum: int, order: int
) -> tuple[_Inputs, tuple[np.ndarray, ...]]:
    w = _period(func, "window", window, minimum)
    inp = _inputs(func, x=x)
    return inp, _k.rolling_moments_nb(inp.arrays[0], w, order)


def rolling_volatility(close: T, window: int = 20) -> T:
    """Rolling volatility: the sample standard deviation (ddof=1) of the last ``window`` one-bar
    log returns ``ln(close[i] / close[i-1])``, per bar (not annualised; multiply by
    ``sqrt(bars per year)`` to annualise). >= 0.

    Warm-up: first value at row ``window`` (the first log return is at row 1).

    Raises:
        ValueError: ``close`` not a 1-D numeric array/Series; ``window`` not an integer >= 2.
    """
    w = _period("rolling_volatility", "window", window, 2)
    inp = _inputs("rolling_volatility", close=close)
    lr = _shifted_ratio(inp.arrays[0], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.log(lr, out=lr)
    _, std, _ = _k.rolling_moments_nb(lr, w, 2)
    return _wrap(std, inp, f"vol_{w}")


def _zscore(func: str, x: Any, window: int, name: str) -> Any:
    inp, (mean, std, _) = _moments(func, x, window, 2, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (inp.arrays[0] - mean) / std
    z[~np.isfinite(z)] = np.nan
    return _wrap(z, inp, name)


def rolling_zscore(x: T, window: int = 20) -> T:
    """Rolling z-score ``(x - mean) / std`` over the last ``window`` values (std with ddof=1, the
    window includes the current value). NaN where the window's std is 0 or any value is NaN.

    Warm-up: first value at row ``window - 1``.

    Raises:
        ValueError: ``x`` not a 1-D numeric array/Series; ``window`` not an integer >= 2.
    """
    return _zscore("rolling_zscore", x, window, f"z_{window}")


def volume_zscore(volume: T, window: int = 20) -> T:
    """Rolling z-score of volume: :func:`rolling_zscore` applied to ``volume`` (unitless).

    Warm-up: first value at row ``window - 1``; NaN where the window's volume is constant.

    Raises:
        ValueError: ``volume`` not a 1-D numeric array/Series; ``window`` not an integer >= 2.
    """
    return _zscore("volume_zscore", volume, window, f"volz_{window}")


def rolling_skew(x: T, window: int = 20) -> T:
    """Rolling sample skewness, bias-corrected as pandas' ``rolling(window).skew()``:
    ``sqrt(w (w - 1)) / (w - 2) * m3 / m2**1.5`` with ``m2, m3`` the window's central moments.

    Warm-up: first value at row ``window - 1``. NaN for a constant window or one with a NaN.

    Raises:
        ValueError: ``x`` not a 1-D numeric array/Series; ``window`` not an integer >= 3.
    """
    inp, (_, _, skew) = _moments("rolling_skew", x, window, 3, 3)
    return _wrap(skew, inp, f"skew_{window}")


def rolling_kurt(x: T, window: int = 20) -> T:
    """Rolling sample excess kurtosis, bias-corrected as pandas' ``rolling(window).kurt()``:
    ``((w**2 - 1) * m4 / m2**2 - 3 (w - 1)**2) / ((w - 2)(w - 3))`` (0 for a normal sample).

    Warm-up: first value at row ``window - 1``. NaN for a constant window or one with a NaN.

    Raises:
        ValueError: ``x`` not a 1-D numeric array/Series; ``window`` not an integer >= 4.
    """
    inp, (_, _, kurt) = _moments("rolling_kurt", x, window, 4, 4)
    return _wrap(kurt, inp, f"kurt_{window}")


def calendar_features(index: pd.DatetimeIndex, timeframe: str) -> pd.DataFrame:
    """Calendar columns for a bar index, computed in UTC (naive timestamps are taken as UTC).

    Returns a frame on ``index`` with int64 columns ``day_of_week`` (0 = Monday .. 6 = Sunday)
    and, for intraday timeframes (``1m``, ``1h``), ``hour`` (0-23). Daily bars (``1d``) get only
    ``day_of_week``: their timestamps are session dates at 00:00 UTC.

    Raises:
        ValueError: ``index`` not a ``DatetimeIndex``; ``timeframe`` not one of ``1m``, ``1h``, ``1d``.
    """
    if not isinstance(index, pd.DatetimeIndex):
        raise ValueError(
            f"calendar_features: index is a {type(index).__name__}; pass a pandas DatetimeIndex (bars.index)"
        )
    tf = Timeframe.parse(timeframe)
    utc = as_utc_index(index)
    cols: dict[str, np.ndarray] = {"day_of_week": np.asarray(utc.day_of_week, dtype=np.int64)}
    if tf.is_intraday:
        cols["hour"] = np.asarray(utc.hour, dtype=np.int64)
    return pd.DataFrame(cols, index=index)
