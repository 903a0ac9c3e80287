"""Numeric kernels of :mod:`features.indicators`: numba functions over contiguous float64 arrays.

Contract of every kernel (the ``*_nb`` names, after vectorbt):

* inputs are 1-D, C-contiguous ``float64`` arrays of equal length and already validated periods;
  the caller (:mod:`features.indicators`) checks them, the kernels do not;
* the output has the input's length, ``NaN`` during the warm-up, and row ``i`` depends only on
  rows ``<= i`` (no look-ahead);
* the definitions follow TA-Lib's C code (``ta_*.c``) step by step, including its guards against
  division by zero, so that results agree with TA-Lib to about 1e-12 relative.

Moving sums are kept with Neumaier (compensated) summation and re-summed exactly every
``_RESYNC`` rows, so their error does not grow with the length of the series the way a
plain running sum or a ``cumsum`` difference does.

Everything compiles lazily on first call (``cache=True`` keeps the machine code on disk);
importing this module does no work beyond defining the functions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_RESYNC = 4096  # rows between exact re-summations of a moving sum

# TA-Lib's TA_EPSILON: TA_IS_ZERO(v) is |v| < 1e-14 (RSI, ADX, CCI, BBANDS' variance guard).
_TA_EPS = 1e-14


@njit(cache=True)
def first_valid_nb(x: np.ndarray) -> int:
    """Index of the first non-NaN value of ``x``, or ``len(x)`` when every value is NaN."""
    for i in range(x.shape[0]):
        if not math.isnan(x[i]):
            return i
    return x.shape[0]


@njit(cache=True)
def _window_sum(x: np.ndarray, start: int, stop: int) -> float:
    """Neumaier sum of ``x[start:stop]``."""
    s = 0.0
    c = 0.0
    for j in range(start, stop):
        v = x[j]
        t = s + v
        if abs(s) >= abs(v):
            c += (s - t) + v
        else:
            c += (v - t) + s
        s = t
    return s + c


@njit(cache=True)
def rolling_sum_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Sum of the last ``period`` values at each row; NaN for the first ``period - 1`` rows.

    Compensated add/remove updates with an exact re-summation every ``_RESYNC`` rows.
    """
    n = x.shape[0]
    out = np.empty(n)
    if n < period:
        out[:] = np.nan
        return out
    out[: period - 1] = np.nan
    s = 0.0
    c = 0.0
    since = 0
    for i in range(period - 1, n):
        if i == period - 1 or since >= _RESYNC:
            s = _window_sum(x, i - period + 1, i + 1)
            c = 0.0
            since = 0
        else:
            # add the new value, then remove the oldest, each with Neumaier compensation
            v = x[i]
            t = s + v
            if abs(s) >= abs(v):
                c += (s - t) + v
            else:
                c += (v - t) + s
            s = t
            v = -x[i - period]
            t = s + v
            if abs(s) >= abs(v):
                c += (s - t) + v
            else:
                c += (v - t) + s
            s = t
            since += 1
        out[i] = s + c
    return out


@njit(cache=True)
def sma_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Simple moving average: mean of the last ``period`` values (TA-Lib SMA)."""
    out = rolling_sum_nb(x, period)
    for i in range(period - 1, x.shape[0]):
        out[i] = out[i] / period
    return out


@njit(cache=True)
def _ema_into(x: np.ndarray, period: int, seed_end: int, out: np.ndarray) -> None:
    """TA-Lib INT_EMA: seed with the mean of ``x[seed_end - period + 1 : seed_end + 1]`` at row
    ``seed_end``, then ``e = (x - e) * k + e`` with ``k = 2 / (period + 1)``."""
    n = x.shape[0]
    k = 2.0 / (period + 1)
    s = 0.0
    for j in range(seed_end - period + 1, seed_end + 1):
        s += x[j]
    e = s / period
    out[seed_end] = e
    for i in range(seed_end + 1, n):
        e = (x[i] - e) * k + e
        out[i] = e


@njit(cache=True)
def ema_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Exponential moving average seeded by the SMA of the first ``period`` values (TA-Lib EMA)."""
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n >= period:
        _ema_into(x, period, period - 1, out)
    return out


@njit(cache=True)
def macd_nb(x: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib MACD (``slow >= fast``): both EMAs start at row ``slow - 1`` (the fast one seeded by
    the mean of the ``fast`` values ending there), the signal EMA runs on the MACD line from
    there, and all three outputs start at row ``slow + signal - 2``."""
    n = x.shape[0]
    macd = np.full(n, np.nan)
    sig = np.full(n, np.nan)
    hist = np.full(n, np.nan)
    start = slow + signal - 2
    if n <= start:
        return macd, sig, hist
    fast_e = np.full(n, np.nan)
    slow_e = np.full(n, np.nan)
    _ema_into(x, fast, slow - 1, fast_e)
    _ema_into(x, slow, slow - 1, slow_e)
    line = np.empty(n)
    for i in range(slow - 1, n):
        line[i] = fast_e[i] - slow_e[i]
    k = 2.0 / (signal + 1)
    s = 0.0
    for j in range(slow - 1, start + 1):
        s += line[j]
    e = s / signal
    for i in range(start, n):
        if i > start:
            e = (line[i] - e) * k + e
        macd[i] = line[i]
        sig[i] = e
        hist[i] = line[i] - e
    return macd, sig, hist


@njit(cache=True)
def rsi_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI as TA-Lib computes it; first value at row ``period``.

    Average gain and loss start as the means of the first ``period`` changes and are then
    smoothed as ``a = (a * (period - 1) + change) / period``. RSI is
    ``100 * gain / (gain + loss)``, and 0 where ``gain + loss`` is below 1e-14 (TA_IS_ZERO).
    """
    n = x.shape[0]
    out = np.full(n, np.nan)
    if n <= period:
        return out
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        d = x[i] - x[i - 1]
        if d < 0:
            loss -= d
        else:
            gain += d
    gain /= period
    loss /= period
    tot = gain + loss
    out[period] = 100.0 * (gain / tot) if not (-_TA_EPS < tot < _TA_EPS) else 0.0
    pm1 = period - 1
    for i in range(period + 1, n):
        d = x[i] - x[i - 1]
        gain *= pm1
        loss *= pm1
        if d < 0:
            loss -= d
        else:
            gain += d
        gain /= period
        loss /= period
        tot = gain + loss
        out[i] = 100.0 * (gain / tot) if not (-_TA_EPS < tot < _TA_EPS) else 0.0
    return out


@njit(cache=True)
def _true_range(h: float, low: float, prev_close: float) -> float:
    r = h - low
    a = abs(h - prev_close)
    if a > r:
        r = a
    a = abs(low - prev_close)
    if a > r:
        r = a
    return r


@njit(cache=True)
def atr_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's ATR (TA-Lib ATR): true range from row 1; ATR at row ``period`` is the mean of the
    first ``period`` true ranges, then ``atr = (atr * (period - 1) + tr) / period``.
    ``period == 1`` is the true range itself (TA-Lib TRANGE)."""
    n = high.shape[0]
    out = np.full(n, np.nan)
    if n <= period:
        return out
    if period == 1:
        for i in range(1, n):
            out[i] = _true_range(high[i], low[i], close[i - 1])
        return out
    s = 0.0
    for i in range(1, period + 1):
        s += _true_range(high[i], low[i], close[i - 1])
    a = s / period
    out[period] = a
    pm1 = period - 1
    for i in range(period + 1, n):
        a = (a * pm1 + _true_range(high[i], low[i], close[i - 1])) / period
        out[i] = a
    return out


@njit(cache=True)
def obv_nb(close: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """On-balance volume (TA-Lib OBV): starts at ``volume[0]``, then adds the volume on an up
    close, subtracts it on a down close, keeps it on an unchanged close."""
    n = close.shape[0]
    out = np.empty(n)
    if n == 0:
        return out
    acc = volume[0]
    prev = close[0]
    out[0] = acc
    for i in range(1, n):
        c = close[i]
        if c > prev:
            acc += volume[i]
        elif c < prev:
            acc -= volume[i]
        out[i] = acc
        prev = c
    return out


@njit(cache=True)
def roc_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Rate of change in percent, ``(x[i] / x[i - period] - 1) * 100`` (TA-Lib ROC; 0 where
    ``x[i - period] == 0``)."""
    n = x.shape[0]
    out = np.empty(n)
    out[: min(period, n)] = np.nan
    for i in range(period, n):
        b = x[i - period]
        out[i] = ((x[i] / b) - 1.0) * 100.0 if b != 0.0 else 0.0
    return out


@njit(cache=True)
def rolling_max_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Maximum of the last ``period`` values (monotonic deque, O(n)); NaN for the first ``period - 1``."""
    n = x.shape[0]
    out = np.empty(n)
    out[: min(period - 1, n)] = np.nan
    dq = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for i in range(n):
        v = x[i]
        while tail > head and x[dq[tail - 1]] <= v:
            tail -= 1
        dq[tail] = i
        tail += 1
        if dq[head] <= i - period:
            head += 1
        if i >= period - 1:
            out[i] = x[dq[head]]
    return out


@njit(cache=True)
def rolling_min_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Minimum of the last ``period`` values (monotonic deque, O(n)); NaN for the first ``period - 1``."""
    n = x.shape[0]
    out = np.empty(n)
    out[: min(period - 1, n)] = np.nan
    dq = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for i in range(n):
        v = x[i]
        while tail > head and x[dq[tail - 1]] >= v:
            tail -= 1
        dq[tail] = i
        tail += 1
        if dq[head] <= i - period:
            head += 1
        if i >= period - 1:
            out[i] = x[dq[head]]
    return out


@njit(cache=True)
def stoch_nb(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, fastk: int, slowk: int, slowd: int
) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib STOCH with SMA smoothing. Fast %K is ``(close - lowest low) / ((highest high -
    lowest low) / 100)`` over ``fastk`` rows (0 when the range is 0); slow %K is its
    ``slowk``-SMA, slow %D the ``slowd``-SMA of slow %K; both start at row
    ``fastk + slowk + slowd - 3``."""
    n = high.shape[0]
    k_out = np.full(n, np.nan)
    d_out = np.full(n, np.nan)
    start = fastk + slowk + slowd - 3
    if n <= start:
        return k_out, d_out
    hh = rolling_max_nb(high, fastk)
    ll = rolling_min_nb(low, fastk)
    fk = np.empty(n)
    fk[: fastk - 1] = 0.0
    for i in range(fastk - 1, n):
        diff = (hh[i] - ll[i]) / 100.0
        fk[i] = (close[i] - ll[i]) / diff if diff != 0.0 else 0.0
    sk = sma_nb(fk[fastk - 1 :], slowk)
    sd = sma_nb(sk[slowk - 1 :], slowd)
    off_k = fastk - 1
    off_d = fastk + slowk - 2
    for i in range(start, n):
        k_out[i] = sk[i - off_k]
        d_out[i] = sd[i - off_d]
    return k_out, d_out


@njit(cache=True)
def willr_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Williams %R (TA-Lib WILLR): ``(highest - close) / ((highest - lowest) / -100)`` over
    ``period`` rows, 0 when the range is 0; first value at row ``period - 1``."""
    n = high.shape[0]
    hh = rolling_max_nb(high, period)
    ll = rolling_min_nb(low, period)
    out = hh  # reuse the buffer: row i of hh is read before it is overwritten
    for i in range(period - 1, n):
        diff = (hh[i] - ll[i]) / -100.0
        out[i] = (hh[i] - close[i]) / diff if diff != 0.0 else 0.0
    return out


@njit(cache=True)
def _typical(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    n = high.shape[0]
    tp = np.empty(n)
    for i in range(n):
        tp[i] = (high[i] + low[i] + close[i]) / 3.0
    return tp


@njit(cache=True)
def cci_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Commodity Channel Index (TA-Lib CCI): with typical price ``tp = (h + l + c) / 3``,
    ``(tp - mean(tp)) / (0.015 * mean(|tp - mean(tp)|))`` over ``period`` rows, 0 when either the
    numerator or the summed deviation is below 1e-14 (TA_IS_ZERO); first value at row ``period - 1``."""
    n = high.shape[0]
    tp = _typical(high, low, close)
    out = np.empty(n)
    out[: min(period - 1, n)] = np.nan
    for i in range(period - 1, n):
        lo = i - period + 1
        s = 0.0
        for j in range(lo, i + 1):
            s += tp[j]
        avg = s / period
        md = 0.0
        for j in range(lo, i + 1):
            md += abs(tp[j] - avg)
        num = tp[i] - avg
        if -_TA_EPS < num < _TA_EPS or md < _TA_EPS:
            out[i] = 0.0
        else:
            out[i] = num / (0.015 * (md / period))
    return out


@njit(cache=True)
def mfi_nb(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, period: int
) -> np.ndarray:
    """Money Flow Index (TA-Lib MFI); first value at row ``period``.

    Raw money flow is ``tp * volume`` (``tp = (h + l + c) / 3``). It counts as negative when
    ``tp`` fell from the previous row, positive otherwise, and as nothing when ``tp`` moved by no
    more than 1e-14 of ``|tp| + |previous tp|`` (TA-Lib's TA_IS_ZERO_SCALED dead zone).
    MFI is ``100 * positive / (positive + negative)`` over the last ``period`` rows (positive
    clamped into ``[0, total]``), and 0 when the total is not positive or when no row of the
    window carried any flow.
    """
    n = high.shape[0]
    out = np.full(n, np.nan)
    if n <= period:
        return out
    pos = np.zeros(n - 1)
    neg = np.zeros(n - 1)
    prev = (high[0] + low[0] + close[0]) / 3.0
    for i in range(1, n):
        tp = (high[i] + low[i] + close[i]) / 3.0
        d = tp - prev
        scale = abs(tp) + abs(prev)
        prev = tp
        flow = 0.0 if abs(d) <= _TA_EPS * scale else tp * volume[i]
        if d < 0.0:
            neg[i - 1] = flow
        else:
            pos[i - 1] = flow
    ps = rolling_sum_nb(pos, period)
    ns = rolling_sum_nb(neg, period)
    null_run = 0
    for i in range(1, n):
        null_run = null_run + 1 if (pos[i - 1] == 0.0 and neg[i - 1] == 0.0) else 0
        if i < period:
            continue
        if null_run >= period:
            out[i] = 0.0
            continue
        p = ps[i - 1]
        tot = p + ns[i - 1]
        if tot <= 0.0:
            out[i] = 0.0
        else:
            p = 0.0 if p < 0.0 else (tot if p > tot else p)
            out[i] = 100.0 * (p / tot)
    return out


@njit(cache=True)
def adx_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Wilder's ADX, step for step as TA-Lib ADX; first value at row ``2 * period - 1``.

    +DM/-DM and TR are Wilder-smoothed sums (first ``period - 1`` raw values summed, then
    ``s = s - s / period + v``); DI = 100 * DM / TR; DX = 100 * |+DI - -DI| / (+DI + -DI); ADX is
    the mean of the first ``period`` DX values, then ``adx = (adx * (period - 1) + dx) / period``.
    A TR or DI sum below 1e-14 (TA_IS_ZERO) skips that row's DX.
    """
    n = high.shape[0]
    out = np.full(n, np.nan)
    start = 2 * period - 1
    if n <= start:
        return out
    pdm = 0.0
    mdm = 0.0
    tr = 0.0
    ph = high[0]
    pl = low[0]
    pc = close[0]
    today = 0
    for _ in range(period - 1):
        today += 1
        h = high[today]
        lo = low[today]
        dp = h - ph
        dm = pl - lo
        ph = h
        pl = lo
        if dm > 0 and dp < dm:
            mdm += dm
        elif dp > 0 and dp > dm:
            pdm += dp
        tr += _true_range(h, lo, pc)
        pc = close[today]
    sum_dx = 0.0
    adx = 0.0
    pm1 = period - 1
    while today < n - 1:
        today += 1
        h = high[today]
        lo = low[today]
        dp = h - ph
        dm = pl - lo
        ph = h
        pl = lo
        mdm -= mdm / period
        pdm -= pdm / period
        if dm > 0 and dp < dm:
            mdm += dm
        elif dp > 0 and dp > dm:
            pdm += dp
        tr = tr - (tr / period) + _true_range(h, lo, pc)
        pc = close[today]
        dx = -1.0
        if not (-_TA_EPS < tr < _TA_EPS):
            mdi = 100.0 * (mdm / tr)
            pdi = 100.0 * (pdm / tr)
            t = mdi + pdi
            if not (-_TA_EPS < t < _TA_EPS):
                dx = 100.0 * (abs(mdi - pdi) / t)
        if today < start:
            if dx >= 0.0:
                sum_dx += dx
        elif today == start:
            if dx >= 0.0:
                sum_dx += dx
            adx = sum_dx / period
            out[today] = adx
        else:
            if dx >= 0.0:
                adx = ((adx * pm1) + dx) / period
            out[today] = adx
    return out


@njit(cache=True)
def bbands_nb(
    x: np.ndarray, period: int, k_up: float, k_dn: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bollinger bands (TA-Lib BBANDS, SMA middle): ``middle +/- k * std`` with the population
    standard deviation of the last ``period`` values.

    The variance is summed exactly per window around the (compensated) mean, two-pass, which
    avoids the cancellation of TA-Lib's ``E[x^2] - E[x]^2`` (a window of equal values has
    exactly 0 spread here); a variance below 1e-14 counts as 0, as in TA-Lib.
    """
    n = x.shape[0]
    mid = sma_nb(x, period)
    up = np.empty(n)
    dn = np.empty(n)
    w = min(period - 1, n)
    up[:w] = np.nan
    dn[:w] = np.nan
    for i in range(period - 1, n):
        mean = mid[i]
        m2 = 0.0
        for j in range(i - period + 1, i + 1):
            d = x[j] - mean
            m2 += d * d
        var = m2 / period
        sd = math.sqrt(var) if var >= _TA_EPS else 0.0  # TA_IS_ZERO_OR_NEG guard
        m = mid[i]
        up[i] = m + k_up * sd
        dn[i] = m - k_dn * sd
    return up, mid, dn


@njit(cache=True)
def rolling_moments_nb(x: np.ndarray, window: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-window mean, sample std (ddof=1) and, for ``order`` 3 or 4, pandas' bias-corrected
    skewness or excess kurtosis, from exact two-pass central moments of each window.

    Returns ``(mean, std, shape)``; ``shape`` is NaN everywhere for ``order`` 2. A window with
    a NaN gives NaN. A window whose variance is 0 up to rounding (below ``(1e-14 * |mean|)**2``)
    has std 0 and NaN skewness/kurtosis, as pandas has.
    """
    n = x.shape[0]
    mean_o = np.full(n, np.nan)
    std_o = np.full(n, np.nan)
    shape_o = np.full(n, np.nan)
    w = float(window)
    for i in range(window - 1, n):
        lo = i - window + 1
        s = 0.0
        for j in range(lo, i + 1):
            s += x[j]
        if math.isnan(s):
            continue
        m = s / w
        s2 = 0.0
        s3 = 0.0
        s4 = 0.0
        for j in range(lo, i + 1):
            d = x[j] - m
            d2 = d * d
            s2 += d2
            if order >= 3:
                s3 += d2 * d
                s4 += d2 * d2
        mean_o[i] = m
        tiny = 1e-14 * abs(m)
        if s2 / w <= tiny * tiny:
            std_o[i] = 0.0
            continue
        std_o[i] = math.sqrt(s2 / (w - 1.0))
        m2 = s2 / w
        if order == 3:
            m3 = s3 / w
            shape_o[i] = math.sqrt(w * (w - 1.0)) / (w - 2.0) * m3 / (m2 * math.sqrt(m2))
        elif order == 4:
            m4 = s4 / w
            shape_o[i] = ((w * w - 1.0) * m4 / (m2 * m2) - 3.0 * (w - 1.0) ** 2) / ((w - 2.0) * (w - 3.0))
    return mean_o, std_o, shape_o
