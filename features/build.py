"""Building a feature set's columns from canonical bars (see :mod:`features.spec` for the sets).

``build_features(bars, feature_set)`` returns one float64 column per indicator output, in the
set's order. Every column at row ``t`` uses bars ``<= t`` only; the first
``feature_set.warmup`` rows hold NaN in at least one column; NaN is never filled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from features import indicators as ind
from features.spec import FeatureSet, IndicatorSpec
from market.bars import BAR_COLUMNS, Timeframe


def _source(name: str, cols: Mapping[str, np.ndarray]) -> np.ndarray:
    if name == "ret":
        return np.asarray(ind.returns(cols["close"], 1), dtype="float64")
    if name == "log_ret":
        return np.asarray(ind.log_returns(cols["close"], 1), dtype="float64")
    return cols[name]


_RANGES: dict[str, tuple[float, float]] = {
    "rsi": (0.0, 100.0),
    "mfi": (0.0, 100.0),
    "adx": (0.0, 100.0),
    "willr": (-100.0, 0.0),
}
_SNAP = 1e-9


def _snap(x: np.ndarray, low: float, high: float) -> np.ndarray:
    """Put values within ``_SNAP`` outside ``[low, high]`` on the bound.

    TA-Lib's running sums (the SMA inside ``stoch``'s %D, for one) can leave an oscillator a
    few 1e-15 outside its exact range; larger excursions are left for validation to catch.
    """
    x = np.where((x < low) & (x >= low - _SNAP), low, x)
    return np.where((x > high) & (x <= high + _SNAP), high, x)


def _compute(
    spec: IndicatorSpec, cols: Mapping[str, np.ndarray], index: pd.DatetimeIndex, timeframe: Timeframe
) -> list[np.ndarray]:
    """The outputs of ``spec`` on the bar arrays ``cols``, in :meth:`IndicatorSpec.columns` order."""
    p: dict[str, Any] = dict(spec.params)
    h, lo, c, v = (cols[k] for k in ("high", "low", "close", "volume"))
    kind = spec.kind

    def arr(x: Any) -> np.ndarray:
        return np.asarray(x, dtype="float64")

    def level(x: Any) -> np.ndarray:
        return arr(x) / c if p.get("ratio") else arr(x)

    simple: dict[str, Callable[[], Any]] = {
        "rsi": lambda: ind.rsi(c, p["period"]),
        "obv": lambda: ind.obv(c, v),
        "obv_zscore": lambda: ind.rolling_zscore(np.asarray(ind.obv(c, v), dtype="float64"), p["window"]),
        "roc": lambda: ind.roc(c, p["period"]),
        "adx": lambda: ind.adx(h, lo, c, p["period"]),
        "cci": lambda: ind.cci(h, lo, c, p["period"]),
        "willr": lambda: ind.willr(h, lo, c, p["period"]),
        "mfi": lambda: ind.mfi(h, lo, c, v, p["period"]),
        "returns": lambda: ind.returns(c, p["n"]),
        "log_returns": lambda: ind.log_returns(c, p["n"]),
        "rolling_volatility": lambda: ind.rolling_volatility(c, p["window"]),
        "volume_zscore": lambda: ind.volume_zscore(v, p["window"]),
        "rolling_zscore": lambda: ind.rolling_zscore(_source(p["source"], cols), p["window"]),
        "rolling_skew": lambda: ind.rolling_skew(_source(p["source"], cols), p["window"]),
        "rolling_kurt": lambda: ind.rolling_kurt(_source(p["source"], cols), p["window"]),
    }
    if kind in simple:
        out = arr(simple[kind]())
        if kind in _RANGES:
            out = _snap(out, *_RANGES[kind])
        return [out]
    if kind == "sma":
        return [level(ind.sma(c, p["period"]))]
    if kind == "ema":
        return [level(ind.ema(c, p["period"]))]
    if kind == "atr":
        return [level(ind.atr(h, lo, c, p["period"]))]
    if kind == "macd":
        return [level(x) for x in ind.macd(c, p["fast"], p["slow"], p["signal"])]
    if kind == "stoch":
        return [_snap(arr(x), 0.0, 100.0) for x in ind.stoch(h, lo, c, p["fastk"], p["slowk"], p["slowd"])]
    if kind == "bollinger":
        upper, middle, lower = (arr(x) for x in ind.bollinger(c, p["period"], p["k"]))
        spread = upper - lower
        with np.errstate(divide="ignore", invalid="ignore"):
            width = spread / middle
            flat = spread <= 1e-12 * np.abs(middle)
            pctb = np.where(flat, 0.5, (c - lower) / np.where(flat, 1.0, spread))
        pctb[np.isnan(spread)] = np.nan
        return [level(upper), level(middle), level(lower), width, pctb]
    calendar = ind.calendar_features(index, timeframe.value)
    return [arr(calendar[col]) for col in calendar.columns]


def infer_timeframe(index: pd.DatetimeIndex) -> Timeframe:
    """Guess the timeframe of bars from their open times.

    Day bars open at 00:00 UTC and lie at least a day apart; anything else is intraday, ``1m``
    when a bar opens off the hour or two bars lie less than an hour apart, else ``1h``. One bar
    at midnight reads as ``1d``: pass the timeframe to :func:`build_features` when it is known.
    """
    idx = pd.DatetimeIndex(index)
    if len(idx) == 0:
        return Timeframe.D1
    step = np.diff(idx.asi8).min() if len(idx) > 1 else None
    nanos_hour = 3_600_000_000_000
    off_hour = bool(((idx.minute != 0) | (idx.second != 0)).any())
    if off_hour or (step is not None and step < nanos_hour):
        return Timeframe.M1
    if bool((idx.hour != 0).any()) or (step is not None and step < 24 * nanos_hour):
        return Timeframe.H1
    return Timeframe.D1


def build_features(
    bars: pd.DataFrame, feature_set: FeatureSet, *, timeframe: str | Timeframe | None = None
) -> pd.DataFrame:
    """Build the columns of ``feature_set`` from canonical bars.

    Args:
        bars: canonical bar frame (``market.bars``): a sorted ``DatetimeIndex`` and float
            columns ``open, high, low, close, volume`` (other columns are ignored); prices
            must be positive.
        feature_set: what to build (:func:`get_feature_set` loads the shipped sets).
        timeframe: ``1m``, ``1h`` or ``1d``; only the calendar columns use it. Default: read
            from the index (:func:`infer_timeframe`).

    Returns:
        A float64 frame with the index of ``bars`` and one column per output, in the set's
        order (see :meth:`FeatureSet.columns`). Row ``t`` depends on bars ``<= t`` only; the
        first ``feature_set.warmup`` rows hold NaN; NaN is never filled.

    Raises:
        ValueError: ``bars`` lacks a column, its index is not a sorted DatetimeIndex, or a
            close is not positive.
    """
    missing = [col for col in BAR_COLUMNS if col not in bars.columns]
    if missing:
        raise ValueError(
            f"bars lack column(s) {', '.join(missing)}; build features from a canonical bar frame "
            f"({', '.join(BAR_COLUMNS)}), e.g. market.bars.canonical_bars(frame)"
        )
    if not isinstance(bars.index, pd.DatetimeIndex):
        raise ValueError("bars must be indexed by bar open time (a DatetimeIndex named ts); see market.bars")
    if not bars.index.is_monotonic_increasing:
        raise ValueError("bars must be sorted by time; use market.bars.canonical_bars(frame)")
    cols = {col: bars[col].to_numpy(dtype="float64", copy=True) for col in BAR_COLUMNS}
    if bool((cols["close"] <= 0).any()):
        first = bars.index[int(np.argmax(cols["close"] <= 0))]
        raise ValueError(
            f"close must be positive, got {cols['close'].min()!r} (first at {first}); validate bars first"
        )
    tf = infer_timeframe(bars.index) if timeframe is None else Timeframe.parse(timeframe)
    out: dict[str, np.ndarray] = {}
    for spec in feature_set.indicators:
        names = spec.columns(tf)
        values = _compute(spec, cols, bars.index, tf) if len(bars) else [np.empty(0)] * len(names)
        if len(values) != len(names):
            raise RuntimeError(f"{spec.kind} returned {len(values)} outputs where {len(names)} were expected")
        for name, value in zip(names, values, strict=True):
            out[name] = value
    return pd.DataFrame(out, index=bars.index, dtype="float64")
