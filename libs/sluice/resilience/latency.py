"""Recent latency percentiles, and when to hedge a request.

Dean & Barroso, "The Tail at Scale" (CACM 2013): a hedged request is sent to
a second replica once the first has been outstanding for longer than the
95th-percentile expected latency, which caps the extra load near 5 % while
cutting the tail. `LatencyTracker` supplies that percentile from the last few
hundred samples; `HedgePolicy` turns it into a delay.
"""

from __future__ import annotations

import math


class LatencyTracker:
    """The last `window` latency samples (seconds) in a ring, and their percentiles.

    `percentile(q)` answers from a sorted copy that is re-sorted only when
    `refresh_every` samples have arrived since the last sort (default
    `window // 16`, 16 for 256), so the answer may lag by that many samples;
    the cost is one O(window log window) sort per `refresh_every` samples,
    O(1) otherwise. Before `min_samples` samples it answers None: a p95 of
    five samples is noise. Counts samples, not time: a quiet upstream keeps
    its last known latencies. Raises ValueError for bad settings, a negative
    or NaN sample, or q outside [0, 1].
    """

    __slots__ = ("window", "min_samples", "refresh_every", "_ring", "_next", "_count", "_sorted",
                 "_unsorted")

    def __init__(self, window: int = 256, min_samples: int = 20,
                 refresh_every: int | None = None) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 1 <= min_samples <= window:
            raise ValueError(f"min_samples must be in [1, window], got {min_samples}")
        if refresh_every is None:
            refresh_every = max(1, window // 16)
        if refresh_every < 1:
            raise ValueError(f"refresh_every must be >= 1, got {refresh_every}")
        self.window = window
        self.min_samples = min_samples
        self.refresh_every = refresh_every
        self._ring = [0.0] * window
        self._next = 0
        self._count = 0
        self._sorted: list[float] | None = None
        self._unsorted = 0  # samples recorded since the last sort

    @property
    def count(self) -> int:
        """Samples held (at most `window`)."""
        return self._count

    def record(self, seconds: float) -> None:
        """Add one latency sample, in seconds; the oldest leaves once the ring is full."""
        if not seconds >= 0.0:  # also refuses NaN, which would poison every sort
            raise ValueError(f"latency must be a number >= 0, got {seconds}")
        self._ring[self._next] = seconds
        self._next = (self._next + 1) % self.window
        if self._count < self.window:
            self._count += 1
        self._unsorted += 1

    def percentile(self, q: float) -> float | None:
        """The nearest-rank q-quantile (q in [0, 1], 0.95 = p95) of the held
        samples in seconds, or None while fewer than `min_samples` are held."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {q}")
        n = self._count
        if n < self.min_samples:
            return None
        ordered = self._sorted
        if ordered is None or self._unsorted >= self.refresh_every:
            ordered = self._sorted = sorted(self._ring if n == self.window else self._ring[:n])
            self._unsorted = 0
        # Nearest rank: the smallest sample with at least q of them at or
        # below it. The epsilon keeps 0.07 * 100 = 7.000000000000001 from rounding
        # up. Ranked within the cached copy, which may hold fewer than n.
        rank = math.ceil(q * len(ordered) - 1e-9)
        return ordered[rank - 1 if rank > 0 else 0]


class HedgePolicy:
    """When to send a hedge: after `fixed_delay_s` if set, else after the
    tracker's `percentile` latency (Tail at Scale uses p95), at least
    `min_delay_s` so a fast, noisy upstream is not hedged at once.

    Seconds throughout. `delay` returns None (no hedge) while the tracker has
    too few samples: hedging blind would double the load of a new upstream.
    The caller still needs a hedge budget (`RetryBudget` with a small ratio)
    before it actually sends one. Raises ValueError for bad settings.
    """

    __slots__ = ("percentile", "min_delay_s", "fixed_delay_s")

    def __init__(self, percentile: float = 0.95, min_delay_s: float = 0.05,
                 fixed_delay_s: float | None = None) -> None:
        if not 0.0 < percentile <= 1.0:
            raise ValueError(f"percentile must be in (0, 1], got {percentile}")
        if not min_delay_s >= 0.0:
            raise ValueError(f"min_delay_s must be >= 0, got {min_delay_s}")
        if fixed_delay_s is not None and not fixed_delay_s >= 0.0:
            raise ValueError(f"fixed_delay_s must be >= 0, got {fixed_delay_s}")
        self.percentile = percentile
        self.min_delay_s = min_delay_s
        self.fixed_delay_s = fixed_delay_s

    def delay(self, tracker: LatencyTracker) -> float | None:
        """Seconds after the first attempt's start at which to hedge, or None for no hedge."""
        if self.fixed_delay_s is not None:
            return self.fixed_delay_s
        observed = tracker.percentile(self.percentile)
        if observed is None:
            return None
        return max(self.min_delay_s, observed)
