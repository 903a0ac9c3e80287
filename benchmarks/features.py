"""Indicator benchmark: :mod:`features.indicators` against TA-Lib and the ``ta`` library.

Run ``python -m benchmarks.features``; options: ``--rows N`` (default 1,000,000 one-minute bars
of one 24/7 symbol from :func:`providers.synthetic.simulate`) and ``--repeats K`` (default 3).
Prints one JSON object.

The workload is the default feature set's indicators: rsi(14), macd(12,26,9), bollinger(20,2),
atr(14), obv, roc(10), stoch(5,3,3), adx(14), cci(14), willr(14), mfi(14), sma(20), ema(20),
computed on numpy arrays.

* ``ours_s``: the best of K runs of all thirteen, after one warm-up call whose time (numba
  compilation or loading the on-disk cache) is reported as ``ours_first_call_s``.
* ``talib_s``: anchor, the same thirteen through ``talib`` (C), best of K, in the same process.
* ``ta_s``: anchor, the same thirteen through the pure-pandas ``ta`` library, run once.

Targets: ``ours_s / talib_s <= 1.5`` and ``ta_s / ours_s >= 10``. ``peak_rss_mb`` is the
process's peak resident memory (``ru_maxrss``) after each stage.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np

from benchmarks._common import best_seconds as _best
from benchmarks._common import peak_rss_mb as _peak_rss_mb

TALIB_TARGET = 1.5
TA_TARGET = 10.0


def make_bars(rows: int, seed: int = 11) -> dict[str, np.ndarray]:
    """``rows`` one-minute bars of one 24/7 synthetic symbol, as float64 arrays by column."""
    import pandas as pd

    from providers.synthetic import SyntheticMarket, simulate

    market = SyntheticMarket(seed=seed, symbols=("BENCH",), calendar="24/7", origin="2020-01-01")
    end = pd.Timestamp("2020-01-01", tz="UTC") + pd.Timedelta(minutes=rows)
    frame = simulate(market, "1m", end)["BENCH"]
    return {c: np.ascontiguousarray(frame[c].to_numpy(dtype=np.float64)) for c in frame.columns}


def ours(b: dict[str, np.ndarray]) -> list[Any]:
    """The thirteen indicators through :mod:`features.indicators`."""
    from features import indicators as ind

    h, low, c, v = b["high"], b["low"], b["close"], b["volume"]
    return [
        ind.rsi(c, 14),
        ind.macd(c, 12, 26, 9),
        ind.bollinger(c, 20, 2.0),
        ind.atr(h, low, c, 14),
        ind.obv(c, v),
        ind.roc(c, 10),
        ind.stoch(h, low, c, 5, 3, 3),
        ind.adx(h, low, c, 14),
        ind.cci(h, low, c, 14),
        ind.willr(h, low, c, 14),
        ind.mfi(h, low, c, v, 14),
        ind.sma(c, 20),
        ind.ema(c, 20),
    ]


def with_talib(b: dict[str, np.ndarray]) -> list[Any]:
    """The same thirteen through TA-Lib."""
    import talib

    h, low, c, v = b["high"], b["low"], b["close"], b["volume"]
    return [
        talib.RSI(c, 14),
        talib.MACD(c, 12, 26, 9),
        talib.BBANDS(c, 20, 2.0, 2.0, 0),
        talib.ATR(h, low, c, 14),
        talib.OBV(c, v),
        talib.ROC(c, 10),
        talib.STOCH(h, low, c, 5, 3, 0, 3, 0),
        talib.ADX(h, low, c, 14),
        talib.CCI(h, low, c, 14),
        talib.WILLR(h, low, c, 14),
        talib.MFI(h, low, c, v, 14),
        talib.SMA(c, 20),
        talib.EMA(c, 20),
    ]


def with_ta(b: dict[str, np.ndarray]) -> list[Any]:
    """The same thirteen through the ``ta`` library (pandas)."""
    import pandas as pd
    from ta import momentum, trend, volatility, volume

    h, low, c, v = (pd.Series(b[k]) for k in ("high", "low", "close", "volume"))
    macd = trend.MACD(c, 26, 12, 9)
    bb = volatility.BollingerBands(c, 20, 2)
    st = momentum.StochasticOscillator(h, low, c, 5, 3)
    return [
        momentum.RSIIndicator(c, 14).rsi(),
        (macd.macd(), macd.macd_signal(), macd.macd_diff()),
        (bb.bollinger_hband(), bb.bollinger_mavg(), bb.bollinger_lband()),
        volatility.AverageTrueRange(h, low, c, 14).average_true_range(),
        volume.OnBalanceVolumeIndicator(c, v).on_balance_volume(),
        momentum.ROCIndicator(c, 10).roc(),
        (st.stoch(), st.stoch_signal()),
        trend.ADXIndicator(h, low, c, 14).adx(),
        trend.CCIIndicator(h, low, c, 14).cci(),
        momentum.WilliamsRIndicator(h, low, c, 14).williams_r(),
        volume.MFIIndicator(h, low, c, v, 14).money_flow_index(),
        trend.SMAIndicator(c, 20).sma_indicator(),
        trend.EMAIndicator(c, 20).ema_indicator(),
    ]


def run(rows: int, repeats: int) -> dict[str, Any]:
    """Measure and return the benchmark's figures."""
    bars = make_bars(rows)
    rss_data = _peak_rss_mb()

    start = time.perf_counter()
    ours(bars)
    first_call = time.perf_counter() - start
    ours_s = _best(lambda: ours(bars), repeats)
    rss_ours = _peak_rss_mb()

    with_talib(bars)
    talib_s = _best(lambda: with_talib(bars), repeats)
    rss_talib = _peak_rss_mb()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        with_ta(bars)
        ta_s = time.perf_counter() - start
    rss_ta = _peak_rss_mb()

    vs_talib = ours_s / talib_s
    vs_ta = ta_s / ours_s
    return {
        "benchmark": "features.indicators",
        "rows": rows,
        "repeats": repeats,
        "indicators": [
            "rsi(14)",
            "macd(12,26,9)",
            "bollinger(20,2)",
            "atr(14)",
            "obv",
            "roc(10)",
            "stoch(5,3,3)",
            "adx(14)",
            "cci(14)",
            "willr(14)",
            "mfi(14)",
            "sma(20)",
            "ema(20)",
        ],
        "seconds": {
            "ours_s": round(ours_s, 4),
            "ours_first_call_s": round(first_call, 3),
            "talib_s": round(talib_s, 4),
            "ta_s": round(ta_s, 3),
        },
        "ratios": {"ours_over_talib": round(vs_talib, 3), "ta_over_ours": round(vs_ta, 1)},
        "targets": {"ours_over_talib_max": TALIB_TARGET, "ta_over_ours_min": TA_TARGET},
        "pass": {"vs_talib": vs_talib <= TALIB_TARGET, "vs_ta": vs_ta >= TA_TARGET},
        "peak_rss_mb": {
            "after_data": rss_data,
            "after_ours": rss_ours,
            "after_talib": rss_talib,
            "after_ta": rss_ta,
        },
    }


def main(argv: list[str] | None = None) -> None:
    """Parse the options, run the benchmark and print its JSON object."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.features", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="number of 1m bars (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the fastest counts (default 3)")
    args = parser.parse_args(argv)
    if args.rows < 100:
        parser.error("--rows must be >= 100")
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    print(json.dumps(run(args.rows, args.repeats)))


if __name__ == "__main__":
    main()
