"""features.indicators: properties on random valid OHLCV bars (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features import indicators as ind

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def ohlcv(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Random valid bars: positive prices, high >= max(open, close), low <= min(open, close),
    volume >= 0; prices sometimes flat, volume sometimes zero."""
    n = draw(st.integers(min_value=1, max_value=160))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    scale = draw(st.sampled_from([1e-3, 1.0, 1.1, 100.0, 5e4]))
    vol = draw(st.sampled_from([0.0, 1e-4, 0.01, 0.2]))
    rng = np.random.default_rng(seed)
    close = scale * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
    if draw(st.booleans()):
        close = np.round(close, 2) + 0.01  # ties and flat stretches
    open_ = np.r_[close[0], close[:-1]]
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = top * (1.0 + rng.exponential(vol / 2 + 1e-12, n) * rng.integers(0, 2, n))
    low = bottom * (1.0 - np.minimum(rng.exponential(vol / 2 + 1e-12, n), 0.5) * rng.integers(0, 2, n))
    volume = rng.lognormal(10.0, 1.0, n) * rng.integers(0, 2, n) * draw(st.sampled_from([0.0, 1e-6, 1.0]))
    return open_, high, low, close, volume


def _valid(x: np.ndarray) -> np.ndarray:
    return x[~np.isnan(x)]


@SETTINGS
@given(ohlcv(), st.integers(min_value=2, max_value=30))
def test_bounded_oscillators(bars: tuple[np.ndarray, ...], period: int) -> None:
    _, high, low, close, volume = bars
    for name, x in (
        ("rsi", ind.rsi(close, period)),
        ("mfi", ind.mfi(high, low, close, volume, period)),
        ("adx", ind.adx(high, low, close, period)),
        *(("stoch", s) for s in ind.stoch(high, low, close, period, 3, 3)),
    ):
        v = _valid(x)
        assert np.all((v >= 0.0) & (v <= 100.0 + 1e-9)), (name, v.min(initial=0), v.max(initial=0))
    w = _valid(ind.willr(high, low, close, period))
    assert np.all((w >= -100.0 - 1e-9) & (w <= 0.0))


@SETTINGS
@given(ohlcv(), st.integers(min_value=2, max_value=30))
def test_non_negative_and_ordered(bars: tuple[np.ndarray, ...], period: int) -> None:
    _, high, low, close, _ = bars
    assert np.all(_valid(ind.atr(high, low, close, period)) >= 0.0)
    assert np.all(_valid(ind.rolling_volatility(close, period)) >= 0.0)
    upper, middle, lower = ind.bollinger(close, period, 2.0)
    m = ~np.isnan(middle)
    assert np.array_equal(m, ~np.isnan(upper)) and np.array_equal(m, ~np.isnan(lower))
    assert np.all(lower[m] <= middle[m]) and np.all(middle[m] <= upper[m])


@SETTINGS
@given(ohlcv())
def test_no_inf_anywhere(bars: tuple[np.ndarray, ...]) -> None:
    _, high, low, close, volume = bars
    outputs = [
        ind.sma(close, 5),
        ind.ema(close, 5),
        ind.rsi(close),
        *ind.macd(close, 3, 6, 2),
        *ind.bollinger(close),
        ind.atr(high, low, close),
        ind.obv(close, volume),
        ind.roc(close),
        *ind.stoch(high, low, close),
        ind.adx(high, low, close),
        ind.cci(high, low, close),
        ind.willr(high, low, close),
        ind.mfi(high, low, close, volume),
        ind.returns(close),
        ind.log_returns(close),
        ind.rolling_volatility(close),
        ind.rolling_zscore(close),
        ind.rolling_skew(close),
        ind.rolling_kurt(close),
        ind.volume_zscore(volume),
    ]
    for x in outputs:
        assert x.shape == close.shape
        assert not np.isinf(x).any()
