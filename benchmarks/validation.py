"""Bar-validation benchmark: ``expectations.validate_bars`` against the same checks in plain pandas/numpy.

Run ``python -m benchmarks.validation``; options: ``--rows N`` (default 1,000,000 one-minute bars
of one 24/7 symbol from :func:`providers.synthetic.simulate`, jumps off so every bar is valid)
and ``--repeats K`` (default 3; each figure is the fastest of K runs). Prints one JSON object.

Measurements, in one process on the same frame:

* ``ours``: :func:`expectations.validate_bars` without Data Docs (ephemeral GE context, warmed
  up on a small frame first so that GE's import and context creation are not timed; they are
  reported as ``ge_warmup_s``).
* ``plain``: anchor, the same checks written directly as vectorised pandas/numpy (nulls, finite
  positive prices, OHLC order, volume, unique and increasing timestamps, future, grid and
  calendar through ``Calendar.bar_bins``, the rolling-median/MAD return bound and the spike rule),
  returning the failing row positions per check.
* ``ours_1pct_bad``: ``validate_bars`` on the same frame with 1 % of the rows given a negative
  volume, to show the cost of row-level failure lists.

``overhead_ratio`` is ``ours_s / plain_s``: what the framework (Great Expectations, the report)
costs over hand-written checks. ``peak_rss_mb`` is the process's peak resident memory
(``ru_maxrss``) after each stage.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import peak_rss_mb as _peak_rss_mb
from config.validation import ReturnBound, ReturnPolicy

SYMBOL = "BENCH"
ASSET_CLASS = "crypto"
TIMEFRAME = "1m"


def _best(func: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = func()
        best = min(best, time.perf_counter() - start)
    return best, out


def make_frame(rows: int, seed: int = 11) -> pd.DataFrame:
    """``rows`` valid one-minute bars of one 24/7 symbol, with ``ts`` as a column."""
    from providers.synthetic import SyntheticMarket, simulate

    market = SyntheticMarket(seed=seed, symbols=(SYMBOL,), calendar="24/7", jump_intensity=0.0)
    end = market.origin + pd.Timedelta(minutes=rows)
    return simulate(market, TIMEFRAME, end)[SYMBOL].reset_index()


def plain_checks(
    frame: pd.DataFrame,
    calendar: Any,
    now: pd.Timestamp,
    bound: ReturnBound,
    returns: ReturnPolicy,
) -> dict[str, np.ndarray]:
    """The bars suite's row checks in plain pandas/numpy: failing positions per check (the same
    return rules as the suite: warning bound, spike bound, split-like ratios, ceiling, stale)."""
    window, k, floor, min_periods = bound.window, bound.k, bound.floor, returns.min_periods
    ts = pd.DatetimeIndex(pd.to_datetime(frame["ts"], utc=True)).as_unit("ns")
    o, h, lo, c, v = (
        frame[col].to_numpy(dtype="float64") for col in ("open", "high", "low", "close", "volume")
    )
    prices = np.column_stack([o, h, lo, c])
    out: dict[str, np.ndarray] = {}
    out["not_null"] = np.flatnonzero(
        np.isnan(np.column_stack([prices, v])).any(axis=1) | np.asarray(ts.isna())
    )
    with np.errstate(invalid="ignore"):
        out["prices_positive"] = np.flatnonzero(((prices <= 0) | np.isinf(prices)).any(axis=1))
        out["high_ge_open_close"] = np.flatnonzero(h < np.fmax(o, c))
        out["low_le_open_close"] = np.flatnonzero(lo > np.fmin(o, c))
        out["high_ge_low"] = np.flatnonzero(h < lo)
        out["volume_non_negative"] = np.flatnonzero((v < 0) | np.isinf(v))
    dup = frame.duplicated(subset=["ts"], keep=False).to_numpy()
    out["ts_unique"] = np.flatnonzero(dup)
    values = ts.asi8
    out["ts_increasing"] = np.flatnonzero(values[1:] < np.maximum.accumulate(values)[:-1]) + 1
    out["ts_not_future"] = np.flatnonzero(values > now.value)
    bins = calendar.bar_bins(ts, TIMEFRAME)
    off = np.asarray(bins.isna())
    out["ts_on_calendar"] = np.flatnonzero(off)
    out["ts_on_grid"] = np.flatnonzero(~off & (bins.as_unit("ns").asi8 != values))
    r = pd.Series(np.log(c)).diff()
    med = r.rolling(window, min_periods=min_periods).median().shift(1)
    mad = (r - med).abs().rolling(window, min_periods=min_periods).median().shift(1)
    warm = mad.notna().to_numpy() & med.notna().to_numpy()
    scale = 1.4826 * mad.fillna(0.0).to_numpy()
    rv, m0 = r.to_numpy(), med.fillna(0.0).to_numpy()
    nxt = r.shift(-1).to_numpy()
    sb = np.maximum(bound.spike_k * scale, bound.spike_floor)
    with np.errstate(invalid="ignore", over="ignore"):
        spike = (
            warm
            & (np.abs(rv - m0) > sb)
            & (np.abs(nxt - m0) > sb)
            & (rv * nxt < 0)
            & (np.abs(rv + nxt) <= returns.spike_reversion * np.fmin(abs(rv), abs(nxt)))
        )
        adjusted = rv.copy()
        after = np.flatnonzero(spike[:-1]) + 1
        adjusted[after] = np.log(c[after]) - np.log(c[after - 2])
        z = np.where(warm, np.abs(adjusted - m0) / np.maximum(k * scale, floor), np.nan)
        ratios = np.asarray(returns.split_ratios, dtype="float64")
        ratios = np.concatenate([ratios, 1.0 / ratios])
        factor = np.exp(adjusted)[:, None] / ratios[None, :]
        near = (np.abs(factor - 1.0) <= returns.split_tolerance).any(axis=1)
        out["return_in_bound"] = np.flatnonzero(z > 1.0)
        out["split_like"] = np.flatnonzero(warm & ~spike & (z > 1.0) & near)
        out["return_ceiling"] = np.flatnonzero(np.abs(adjusted) / bound.ceiling > 1.0)
    out["no_spike"] = np.flatnonzero(spike)
    same = np.zeros(len(c), dtype=bool)
    same[1:] = c[1:] == c[:-1]
    run = pd.Series(same).groupby((~pd.Series(same)).cumsum()).cumsum().to_numpy()
    out["stale_price"] = np.flatnonzero(run >= bound.stale_run)
    out["ts_in_calendar_span"] = np.flatnonzero(calendar.outside_span(ts))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its JSON object and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from config.validation import load_validation_policy
    from market.calendars import get_calendar

    start = time.perf_counter()
    frame = make_frame(args.rows)
    simulate_s = time.perf_counter() - start
    calendar = get_calendar("24/7")
    policy = load_validation_policy()
    bound = policy.return_bound(ASSET_CLASS, TIMEFRAME)
    now = frame["ts"].iloc[-1] + pd.Timedelta(minutes=1)
    rss_data = _peak_rss_mb()

    plain_s, plain_out = _best(
        lambda: plain_checks(frame, calendar, now, bound, policy.returns),
        args.repeats,
    )
    plain_failures = int(sum(len(v) for v in plain_out.values()))
    rss_plain = _peak_rss_mb()

    start = time.perf_counter()
    from expectations import validate_bars

    def ours_on(data: pd.DataFrame) -> Any:
        return validate_bars(
            data,
            symbol=SYMBOL,
            timeframe=TIMEFRAME,
            calendar=calendar,
            asset_class=ASSET_CLASS,
            policy=policy,
            now=now,
        )

    ours_on(frame.iloc[:1000].copy())
    warmup_s = time.perf_counter() - start
    ours_s, report = _best(lambda: ours_on(frame), args.repeats)
    rss_ours = _peak_rss_mb()

    bad = frame.copy()
    bad_rows = np.arange(0, len(bad), 100)
    bad.loc[bad_rows, "volume"] = -1.0
    bad_s, bad_report = _best(lambda: ours_on(bad), 1)
    caught = sorted(p for p, ids in bad_report.failures.items() if "volume_non_negative" in ids)
    result = {
        "benchmark": "validation",
        "rows": len(frame),
        "timeframe": TIMEFRAME,
        "calendar": "24/7",
        "repeats": args.repeats,
        "simulate_s": round(simulate_s, 3),
        "ge_warmup_s": round(warmup_s, 3),
        "ours_s": round(ours_s, 3),
        "ours_rows_per_s": round(len(frame) / ours_s),
        "plain_s": round(plain_s, 3),
        "plain_rows_per_s": round(len(frame) / plain_s),
        "overhead_ratio": round(ours_s / plain_s, 2),
        "ours_critical_failures": len(report.failures),
        "plain_failures": plain_failures,
        "ours_1pct_bad_s": round(bad_s, 3),
        "ours_1pct_bad_caught": len(caught) == len(bad_rows) and caught == bad_rows.tolist(),
        "expectations_run": len(report.outcomes),
        "peak_rss_mb": {
            "after_data": rss_data,
            "after_plain": rss_plain,
            "after_ours": rss_ours,
            "final": _peak_rss_mb(),
        },
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
