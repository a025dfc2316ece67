"""A circuit breaker per upstream: stop calling what is failing, probe it back.

The state machine is the classic one (Nygard, "Release It!"; Hystrix):
"closed" passes calls and counts verdicts, "open" refuses them for a while,
"half_open" lets a few probes through and their verdict closes or reopens it.
The two trip rules are those of Envoy's outlier detection (`consecutive_5xx`,
and `failure_percentage_threshold` once `failure_percentage_request_volume`
calls are seen), which also lengthens each successive ejection up to
`max_ejection_time`; here the open time doubles, ordinary exponential backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sluice.resilience._window import SlidingCounts

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

_CALLS = 0
_FAILURES = 1


class CircuitBreaker:
    """Refuses calls to an upstream that is failing, and probes it back to health.

    Trips (closed -> open) on whichever comes first:
    - `consecutive_failures` failures in a row (>= 1), or
    - an error rate >= `error_rate` (0 < r <= 1) over the last `window_s`
      seconds (10 slices), once at least `min_requests` verdicts are in that
      window, so three failures out of four calls at 3 a.m. do not trip it.

    Open for `open_s` seconds, then half-open, lazily: the transition happens
    on the next `allow()`, `state` or `retry_in()` read, so there is no timer.
    Half-open admits at most `half_open_probes` concurrent probes. A probe
    success closes the breaker (window and counters reset); a probe failure
    reopens it for twice the previous open time, at most `max_open_s`, so an
    upstream that stays down is probed less and less often. Closing resets the
    open time to `open_s`.

    Verdicts (`record_success` / `record_failure`) count in closed; in open
    they are ignored (stragglers admitted before the trip must neither extend
    nor end the open time); in half-open they count as a probe's verdict only
    while a probe is outstanding. The breaker has no per-call token, so a
    straggler finishing while a probe is in flight is taken as the probe's
    verdict: it is as fresh a piece of evidence as the probe's.

    `on_change(old, new)` is called after every transition, with the state
    already updated; an exception from it propagates to the caller of the
    method that caused the transition. Times are in seconds of `clock`.
    Raises ValueError for out-of-range settings.
    """

    __slots__ = ("consecutive_failures", "error_rate", "min_requests", "open_s", "max_open_s",
                 "half_open_probes", "_clock", "_on_change", "_state", "_counts", "_consecutive",
                 "_open_for", "_open_until", "_probes")

    def __init__(self, consecutive_failures: int = 5, error_rate: float = 0.5,
                 window_s: float = 10.0, min_requests: int = 20, open_s: float = 5.0,
                 max_open_s: float = 60.0, half_open_probes: int = 1,
                 clock: Callable[[], float] = time.monotonic,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        if consecutive_failures < 1:
            raise ValueError(f"consecutive_failures must be >= 1, got {consecutive_failures}")
        if not 0 < error_rate <= 1:
            raise ValueError(f"error_rate must be in (0, 1], got {error_rate}")
        if min_requests < 1:
            raise ValueError(f"min_requests must be >= 1, got {min_requests}")
        if not 0 < open_s <= max_open_s:
            raise ValueError(f"need 0 < open_s <= max_open_s, got {open_s} and {max_open_s}")
        if half_open_probes < 1:
            raise ValueError(f"half_open_probes must be >= 1, got {half_open_probes}")
        self.consecutive_failures = consecutive_failures
        self.error_rate = error_rate
        self.min_requests = min_requests
        self.open_s = open_s
        self.max_open_s = max_open_s
        self.half_open_probes = half_open_probes
        self._clock = clock
        self._on_change = on_change
        self._state = CLOSED
        self._counts = SlidingCounts(2, window_s, clock())
        self._consecutive = 0
        self._open_for = open_s
        self._open_until = 0.0
        self._probes = 0

    @property
    def state(self) -> str:
        """The state, "closed", "open" or "half_open"; an expired open turns half-open here."""
        if self._state == OPEN:
            self._half_open_if_due(self._clock())
        return self._state

    def retry_in(self) -> float:
        """Seconds until the breaker turns half-open; 0.0 unless it is open."""
        if self._state != OPEN:
            return 0.0
        now = self._clock()
        if self._half_open_if_due(now):
            return 0.0
        return self._open_until - now

    def allow(self) -> bool:
        """May a call go now? Closed: yes. Open: no. Half-open: yes while a
        probe slot is free, and the call takes it: end it with a verdict or
        `release()`."""
        state = self._state
        if state == CLOSED:
            return True  # the hot path: no clock read
        if state == OPEN and not self._half_open_if_due(self._clock()):
            return False
        if self._probes < self.half_open_probes:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        """An admitted call succeeded."""
        state = self._state
        if state == CLOSED:
            counts = self._counts
            counts.roll(self._clock())
            counts.add(_CALLS, 1)
            self._consecutive = 0
        elif state == HALF_OPEN and self._probes:
            self._close()

    def record_failure(self) -> None:
        """An admitted call failed in a way that speaks about the upstream's
        health (5xx, timeout, connection error; not the caller's 4xx)."""
        state = self._state
        if state == CLOSED:
            now = self._clock()
            counts = self._counts
            counts.roll(now)
            counts.add(_CALLS, 1)
            counts.add(_FAILURES, 1)
            self._consecutive += 1
            calls = counts.total(_CALLS)
            if (self._consecutive >= self.consecutive_failures
                    or (calls >= self.min_requests
                        and counts.total(_FAILURES) >= self.error_rate * calls)):
                self._open(now, self.open_s)
        elif state == HALF_OPEN and self._probes:
            self._open(self._clock(), min(self._open_for * 2, self.max_open_s))

    def release(self) -> None:
        """An admitted call ended without a verdict (cancelled, a client
        error): frees its probe slot in half-open; a no-op otherwise."""
        if self._state == HALF_OPEN and self._probes:
            self._probes -= 1

    def _half_open_if_due(self, now: float) -> bool:
        if now < self._open_until:
            return False
        self._probes = 0
        self._set(HALF_OPEN)
        return True

    def _open(self, now: float, open_for: float) -> None:
        self._open_for = open_for
        self._open_until = now + open_for
        self._consecutive = 0
        self._probes = 0
        self._set(OPEN)

    def _close(self) -> None:
        # A fresh start: the failures that tripped it say nothing about the
        # upstream that just answered a probe.
        self._counts.clear()
        self._consecutive = 0
        self._probes = 0
        self._open_for = self.open_s
        self._set(CLOSED)

    def _set(self, new: str) -> None:
        old = self._state
        self._state = new
        if self._on_change is not None:
            self._on_change(old, new)
