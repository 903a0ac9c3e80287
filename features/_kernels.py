"""Numeric kernels of :mod:`features.indicators`: numba functions over contiguous float64 arrays.

Contract of every kernel (the ``*_nb`` names, after vectorbt):

* inputs are 1-D, C-contiguous ``float64`` arrays of equal length and already validated periods;
  the caller (:mod:`features.indicators`) checks them, the kernels do not;
* the output has the input's length, ``NaN`` during the warm-up, and row ``i`` depends only on
  rows ``<= i`` (no look-ahead);
* the definitions follow TA-Lib's C code (``ta_*.c``) step by step, including its guards against
  division by zero, so that results agree with TA-Lib to about 1e-12 relative.

Moving sums are running add/remove sums re-summed exactly (Neumaier) every ``_RESYNC`` rows,
so their error does not grow with the length of the series the way a plain running sum or a
``cumsum`` difference does; moving variances are kept around a shift re-centred every window.

Everything compiles lazily on first call (``cache=True`` keeps the machine code on disk);
importing this module does no work beyond defining the functions.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_RESYNC = 1024  # rows between exact re-summations of a moving sum

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

    A running add/remove sum, re-summed exactly (compensated) every ``_RESYNC`` rows, so the
    rounding error never builds up over more than ``_RESYNC`` updates.
    """
    n = x.shape[0]
    out = np.empty(n)
    out[: min(period - 1, n)] = np.nan
    s = 0.0
    since = _RESYNC
    for i in range(period - 1, n):
        if since >= _RESYNC:
            s = _window_sum(x, i - period + 1, i + 1)
            since = 0
        else:
            s += x[i] - x[i - period]
            since += 1
        out[i] = s
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
    out = np.empty(n)
    out[: min(period - 1, n)] = np.nan
    if n >= period:
        _ema_into(x, period, period - 1, out)
    return out


@njit(cache=True)
def macd_nb(x: np.ndarray, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TA-Lib MACD (``slow >= fast``): both EMAs start at row ``slow - 1`` (the fast one seeded by
    the mean of the ``fast`` values ending there), the signal EMA runs on the MACD line from
    there, and all three outputs start at row ``slow + signal - 2``."""
    n = x.shape[0]
    macd = np.empty(n)
    sig = np.empty(n)
    hist = np.empty(n)
    start = slow + signal - 2
    w = min(start, n)
    macd[:w] = np.nan
    sig[:w] = np.nan
    hist[:w] = np.nan
    if n <= start:
        return macd, sig, hist
    kf = 2.0 / (fast + 1)
    ks = 2.0 / (slow + 1)
    kg = 2.0 / (signal + 1)
    sf = 0.0
    for j in range(slow - fast, slow):
        sf += x[j]
    ss = 0.0
    for j in range(slow):
        ss += x[j]
    ef = sf / fast
    es = ss / slow
    # MACD line from row slow - 1; the signal is seeded by the mean of its first `signal` values
    sg = ef - es
    for i in range(slow, start + 1):
        v = x[i]
        ef = (v - ef) * kf + ef
        es = (v - es) * ks + es
        sg += ef - es
    eg = sg / signal
    line = ef - es
    macd[start] = line
    sig[start] = eg
    hist[start] = line - eg
    for i in range(start + 1, n):
        v = x[i]
        ef = (v - ef) * kf + ef
        es = (v - es) * ks + es
        line = ef - es
        eg = (line - eg) * kg + eg
        macd[i] = line
        sig[i] = eg
        hist[i] = line - eg
    return macd, sig, hist


@njit(cache=True)
def rsi_nb(x: np.ndarray, period: int) -> np.ndarray:
    """Wilder's RSI as TA-Lib computes it; first value at row ``period``.

    Average gain and loss start as the means of the first ``period`` changes and are then
    smoothed as ``a = (a * (period - 1) + change) / period``. RSI is
    ``100 * gain / (gain + loss)``, and 0 where ``gain + loss`` is below 1e-14 (TA_IS_ZERO).
    """
    n = x.shape[0]
    out = np.empty(n)
    out[: min(period, n)] = np.nan
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
    inv = 1.0 / period
    for i in range(period + 1, n):
        d = x[i] - x[i - 1]
        # = (g * (p - 1) + up) / p, without a division in the dependency chain
        up = d if d > 0.0 else 0.0
        dn = -d if d < 0.0 else 0.0
        gain += (up - gain) * inv
        loss += (dn - loss) * inv
        tot = gain + loss
        out[i] = 100.0 * (gain / tot) if not (-_TA_EPS < tot < _TA_EPS) else 0.0
    return out


@njit(cache=True, inline="always")
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
    out = np.empty(n)
    out[: min(period, n)] = np.nan
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
    inv = 1.0 / period
    for i in range(period + 1, n):
        a += (_true_range(high[i], low[i], close[i - 1]) - a) * inv  # = (a * (p - 1) + tr) / p
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
def stoch_nb(
    high: np.ndarray, low: np.ndarray, close: np.ndarray, fastk: int, slowk: int, slowd: int
) -> tuple[np.ndarray, np.ndarray]:
    """TA-Lib STOCH with SMA smoothing. Fast %K is ``(close - lowest low) / ((highest high -
    lowest low) / 100)`` over ``fastk`` rows (0 when the range is 0); slow %K is its
    ``slowk``-SMA, slow %D the ``slowd``-SMA of slow %K; both start at row
    ``fastk + slowk + slowd - 3``."""
    n = high.shape[0]
    k_out = np.empty(n)
    d_out = np.empty(n)
    start = fastk + slowk + slowd - 3
    w = min(start, n)
    k_out[:w] = np.nan
    d_out[:w] = np.nan
    if n <= start:
        return k_out, d_out
    # the smoothing windows are short: sum them afresh each row (exact, and stays in [0, 100])
    ring_k = np.zeros(slowk)  # last `slowk` fast %K values
    ring_d = np.zeros(slowd)  # last `slowd` slow %K values
    hi_idx = -1
    lo_idx = -1
    hh = 0.0
    ll = 0.0
    for i in range(fastk - 1, n):
        trailing = i - fastk + 1
        hh, hi_idx = _track_max(high, trailing, i, hh, hi_idx)
        ll, lo_idx = _track_min(low, trailing, i, ll, lo_idx)
        diff = (hh - ll) / 100.0
        a = i - (fastk - 1)  # rows of fast %K so far, minus one
        ring_k[a % slowk] = (close[i] - ll) / diff if diff != 0.0 else 0.0
        if a < slowk - 1:
            continue
        sk = 0.0
        for j in range(slowk):
            sk += ring_k[j]
        sk /= slowk
        b = a - (slowk - 1)  # rows of slow %K so far, minus one
        ring_d[b % slowd] = sk
        if b < slowd - 1:
            continue
        sd = 0.0
        for j in range(slowd):
            sd += ring_d[j]
        k_out[i] = sk
        d_out[i] = sd / slowd
    return k_out, d_out


@njit(cache=True, inline="always")
def _track_max(x: np.ndarray, trailing: int, today: int, best: float, idx: int) -> tuple[float, int]:
    """Highest value of ``x[trailing:today + 1]`` given the previous one and its row (TA-Lib's
    scan-on-expiry: rescan only when the previous highest row left the window)."""
    v = x[today]
    if idx < trailing:
        idx = trailing
        best = x[trailing]
        for j in range(trailing + 1, today + 1):
            if x[j] >= best:
                best = x[j]
                idx = j
    elif v >= best:
        idx = today
        best = v
    return best, idx


@njit(cache=True, inline="always")
def _track_min(x: np.ndarray, trailing: int, today: int, best: float, idx: int) -> tuple[float, int]:
    """Lowest value of ``x[trailing:today + 1]``; see :func:`_track_max`."""
    v = x[today]
    if idx < trailing:
        idx = trailing
        best = x[trailing]
        for j in range(trailing + 1, today + 1):
            if x[j] <= best:
                best = x[j]
                idx = j
    elif v <= best:
        idx = today
        best = v
    return best, idx


@njit(cache=True)
def willr_nb(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int) -> np.ndarray:
    """Williams %R (TA-Lib WILLR): ``(highest - close) / ((highest - lowest) / -100)`` over
    ``period`` rows, 0 when the range is 0; first value at row ``period - 1``."""
    n = high.shape[0]
    out = np.empty(n)
    out[: min(period - 1, n)] = np.nan
    hi_idx = -1
    lo_idx = -1
    hh = 0.0
    ll = 0.0
    for i in range(period - 1, n):
        trailing = i - period + 1
        hh, hi_idx = _track_max(high, trailing, i, hh, hi_idx)
        ll, lo_idx = _track_min(low, trailing, i, ll, lo_idx)
        diff = (hh - ll) / -100.0
        out[i] = (hh - close[i]) / diff if diff != 0.0 else 0.0
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
    out = np.empty(n)
    out[: min(period, n)] = np.nan
    if n <= period:
        return out
    ring_p = np.zeros(period)
    ring_n = np.zeros(period)
    sp = 0.0
    sn = 0.0
    since = 0
    null_run = 0
    prev = (high[0] + low[0] + close[0]) / 3.0
    for i in range(1, n):
        tp = (high[i] + low[i] + close[i]) / 3.0
        d = tp - prev
        scale = abs(tp) + abs(prev)
        prev = tp
        flow = 0.0 if abs(d) <= _TA_EPS * scale else tp * volume[i]
        fp = 0.0 if d < 0.0 else flow
        fn = flow if d < 0.0 else 0.0
        r = (i - 1) % period
        sp += fp - ring_p[r]
        sn += fn - ring_n[r]
        ring_p[r] = fp
        ring_n[r] = fn
        null_run = null_run + 1 if flow == 0.0 else 0
        if i < period:
            continue
        since += 1
        if since >= _RESYNC:
            sp = _window_sum(ring_p, 0, period)
            sn = _window_sum(ring_n, 0, period)
            since = 0
        tot = sp + sn
        if null_run >= period or tot <= 0.0:
            out[i] = 0.0
        else:
            p = 0.0 if sp < 0.0 else (tot if sp > tot else sp)
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
    out = np.empty(n)
    start = 2 * period - 1
    out[: min(start, n)] = np.nan
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

    The sums of ``x - c`` and ``(x - c)**2`` are kept around a shift ``c`` that is reset to the
    window's mean (and the sums re-summed exactly) every ``period`` rows, which avoids the
    cancellation of TA-Lib's ``E[x^2] - E[x]^2`` on price levels far from zero; a variance below
    1e-14 counts as 0, as in TA-Lib.
    """
    n = x.shape[0]
    up = np.empty(n)
    mid = np.empty(n)
    dn = np.empty(n)
    w = min(period - 1, n)
    up[:w] = np.nan
    mid[:w] = np.nan
    dn[:w] = np.nan
    c = 0.0
    s1 = 0.0
    s2 = 0.0
    since = period
    for i in range(period - 1, n):
        lo = i - period + 1
        if since >= period:
            c = _window_sum(x, lo, i + 1) / period
            s1 = 0.0
            s2 = 0.0
            for j in range(lo, i + 1):
                d = x[j] - c
                s1 += d
                s2 += d * d
            since = 0
        else:
            a = x[i] - c
            b = x[lo - 1] - c
            s1 += a - b
            s2 += a * a - b * b
        since += 1
        m1 = s1 / period
        m = c + m1
        var = s2 / period - m1 * m1
        sd = math.sqrt(var) if var >= _TA_EPS else 0.0  # TA_IS_ZERO_OR_NEG guard
        mid[i] = m
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
