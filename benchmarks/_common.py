"""Helpers the benchmarks share: peak memory and best-of-N timing."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable
from typing import Any


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


def best_seconds(func: Callable[[], Any], repeats: int) -> float:
    """The fastest of ``repeats`` wall-clock timings of ``func()``, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best
