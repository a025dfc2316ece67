"""A retry budget: extra attempts (retries, hedges) as a share of real traffic.

Finagle's `RetryBudget` (com.twitter.finagle.service.RetryBudget, the
TokenRetryBudget over a leaky TokenBucket): every request deposits a fraction
of a token, every extra attempt withdraws a whole one, and both expire after
`window_s`. An upstream that fails every call then sees about `1 + ratio`
times its real load (plus a small floor), not `max_attempts` times: that
multiplication is what turns a partial outage into a retry storm. The SRE
book's "Handling Overload" asks for the same per-client budget (retries under
10 % of requests). Envoy's `retry_budget` caps the same thing by concurrency
(retries in flight as a share of active requests); a windowed count suits a
gateway whose calls last from seconds to minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sluice.resilience._window import SlidingCounts

# Tokens are fixed-point integers (Finagle scales them by 1000 for the same
# reason): float deposits of 0.2 would drift as slices expire and the balance
# would then refuse, or allow, one attempt too many.
_SCALE = 1_000_000


class RetryBudget:
    """Allows extra attempts while, over the last `window_s` seconds,
    extras <= `ratio` x requests + `min_per_second` x `window_s`.

    - `ratio` (>= 0): extras allowed per request, e.g. 0.2 = 20 % extra load.
    - `min_per_second` (>= 0): the floor, so a quiet upstream (a few requests
      a minute) can still be retried; it is Finagle's `minRetriesPerSec`
      reserve of `min_per_second x window_s` tokens, and since withdrawals
      expire too it refills at `min_per_second` on average.
    - `window_s` (> 0, seconds): how long a deposit or a withdrawal counts.
      The window moves in tenths, so a token lives between 0.9 and 1.0 x
      `window_s`.

    The balance is capped by the window itself: it can never exceed
    `ratio` x (requests in the last `window_s`) + the floor. Withdrawals stay
    counted for the whole window, so once older deposits expire the balance
    may go below zero and refuse until traffic or time pays it back.

    One instance per budget: the same class with a smaller `ratio` (say 0.05)
    is the hedging budget. Raises ValueError for out-of-range settings.
    """

    __slots__ = ("ratio", "min_per_second", "window_s", "_clock", "_counts", "_deposit", "_reserve")

    def __init__(self, ratio: float = 0.2, min_per_second: float = 5.0, window_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ratio >= 0:
            raise ValueError(f"ratio must be >= 0, got {ratio}")
        if not min_per_second >= 0:
            raise ValueError(f"min_per_second must be >= 0, got {min_per_second}")
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.window_s = window_s
        self._clock = clock
        self._counts = SlidingCounts(1, window_s, clock())
        self._deposit = round(ratio * _SCALE)
        self._reserve = round(min_per_second * window_s * _SCALE)

    def deposit(self) -> None:
        """Count one request (call once per request, not per attempt)."""
        counts = self._counts
        counts.roll(self._clock())
        counts.add(0, self._deposit)

    def try_withdraw(self) -> bool:
        """Take one extra attempt if the budget has a whole token; False means don't retry/hedge."""
        counts = self._counts
        counts.roll(self._clock())
        if self._reserve + counts.total(0) >= _SCALE:
            counts.add(0, -_SCALE)
            return True
        return False

    def available(self) -> float:
        """Extra attempts the budget would allow right now (>= 0, for a gauge)."""
        counts = self._counts
        counts.roll(self._clock())
        return max(0, self._reserve + counts.total(0)) / _SCALE
