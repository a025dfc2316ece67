"""Timing a call in process: a warm-up, then one wall-clock sample per call."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def samples_ns(fn: Callable[[], object], runs: int) -> list[int]:
    """`runs` durations of `fn()`, nanoseconds, after min(runs / 10, 200)
    untimed calls (caches and branch predictors warm)."""
    for _ in range(min(runs // 10, 200)):
        fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        fn()
        out.append(time.perf_counter_ns() - start)
    return out


def p50_p99(samples: list[float]) -> tuple[float, float]:
    """The median and the 99th percentile of `samples`, in their unit."""
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]
