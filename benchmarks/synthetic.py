"""Benchmark: simulating 1,000,000 minute bars of the synthetic market, for 1 and for 4 assets.

Prints one JSON object. For each asset count: the best wall time of ``REPEATS`` runs of
:func:`providers.synthetic.simulate` (24/7 calendar, so exactly 1,000,000 bars per asset, frames
included), bars per second, and the ratio to the anchor
``numpy.random.default_rng(0).standard_normal((n, k)).cumsum(axis=0)`` of the same shape, timed
the same way in the same process (a Gaussian random walk: the least a simulator of ``n x k``
bars must do). Also the process's peak resident memory.

Run: ``python benchmarks/synthetic.py``
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from providers.synthetic import SyntheticMarket, simulate

N_BARS = 1_000_000
ASSET_COUNTS = (1, 4)
REPEATS = 5


def _best_seconds(work: Callable[[], object], repeats: int = REPEATS) -> float:
    work()  # warm caches (calendar, allocator) before timing
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - t0)
    return best


def _anchor(k: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((N_BARS, k)).cumsum(axis=0)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def main() -> dict[str, object]:
    """Run the benchmark and return its figures (also printed as one JSON line)."""
    results: list[dict[str, object]] = []
    for k in ASSET_COUNTS:
        market = SyntheticMarket(seed=0, symbols=tuple(f"SYN{i}" for i in range(k)), calendar="24/7")
        end = market.origin + pd.Timedelta(minutes=N_BARS)
        frames = simulate(market, "1m", end)
        if any(len(f) != N_BARS for f in frames.values()):
            raise RuntimeError(f"expected {N_BARS} bars per asset, got {[len(f) for f in frames.values()]}")
        del frames
        ours = _best_seconds(partial(simulate, market, "1m", end))
        anchor = _best_seconds(partial(_anchor, k))
        results.append(
            {
                "assets": k,
                "bars_per_asset": N_BARS,
                "seconds": round(ours, 4),
                "bars_per_s": round(N_BARS / ours),
                "asset_bars_per_s": round(N_BARS * k / ours),
                "anchor_seconds": round(anchor, 4),
                "ratio_vs_anchor": round(ours / anchor, 2),
            }
        )
    report: dict[str, object] = {
        "benchmark": "synthetic.simulate",
        "timeframe": "1m",
        "calendar": "24/7",
        "anchor": "numpy.random.default_rng(0).standard_normal((n, k)).cumsum(axis=0)",
        "timing": f"best of {REPEATS} after one warm-up",
        "results": results,
        "peak_rss_mb": round(_peak_rss_mb(), 1),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "machine": platform.machine(),
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
