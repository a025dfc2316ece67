"""Gateway-wide overload protection: refuse the least important work first.

Google SRE book, "Handling Overload": every request carries a criticality
(CRITICAL_PLUS, CRITICAL, SHEDDABLE_PLUS, SHEDDABLE); a task near its limit
rejects the sheddable ones first, cheaply, so the critical ones keep being
served. Here the criticality is a shed class 0..3 derived from the tenant's
tier and the client's priority, and "near the limit" is the larger of two
readings of utilisation: requests in flight against a hard cap, and the event
loop's lag against the lag that means the process is saturated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from sluice.resilience.classes import class_fractions

# Shed classes, most important first, named after the SRE book's criticalities.
CLASS_NAMES = ("critical_plus", "critical", "sheddable_plus", "sheddable")

_TIER_CLASS = {"enterprise": 0, "standard": 1, "free": 2}
# What a client-chosen priority does to the class: it can only raise it
# (= lower the importance). Batch is SHEDDABLE_PLUS, as in the SRE book.
_PRIORITY_FLOOR = {"interactive": 0, "batch": 2, "background": 3}

# Utilisation (0..1 = idle..full) at and above which each class is refused.
DEFAULT_THRESHOLDS: Mapping[int, float] = MappingProxyType({0: 1.0, 1: 0.9, 2: 0.75, 3: 0.6})


def shed_class(tier: str, priority: str = "interactive") -> int:
    """The shed class (0 = most important .. 3) of a request.

    `tier`: "enterprise" -> 0, "standard" -> 1, "free" -> 2; any other tier
    counts as "standard". `priority`, chosen by the client: "interactive"
    (the default; also what an unknown value means) leaves the tier's class,
    "batch" makes it at least 2, "background" makes it 3. A client can lower
    its own importance but never raise it, so enterprise interactive is 0,
    free is 2 whatever it asks, and background is 3 for every tier.
    """
    return max(_TIER_CLASS.get(tier, 1), _PRIORITY_FLOOR.get(priority, 0))


class LoadShedder:
    """Admits or refuses each request by shed class from one utilisation figure.

    utilisation u = max(in_flight / `max_in_flight`, lag / `lag_threshold_s`),
    where lag is a smoothed event-loop lag in seconds (see `report_lag`). Each
    reading is 1.0 when the process is full: `max_in_flight` requests at once,
    or a loop lagging by `lag_threshold_s`. A class-c request is admitted iff
    u < thresholds[c]. Thresholds are in (0, 1] and must not grow with the
    class number, so whenever class 0 (threshold 1.0 by default: refused only
    at the hard cap) is refused, every other class already is. Refusing is
    O(1) and allocation-free, as the SRE book asks of rejection.

    `enter(cls)` decides and, when admitting, counts the request in flight;
    the caller must `exit()` exactly once for each admitted one. Per-class
    admitted/shed counts come from `counters()`. `retry_after_s()` is what to
    put in Retry-After: clients that back off on it (the SRE book's
    client-side throttling) lower the load the gateway must refuse.

    `lag_halflife_s`: the half-life of the lag average in seconds of `clock`.
    `min_retry_s`/`max_retry_s`: the range of `retry_after_s`. Raises
    ValueError for bad settings or an unknown class.
    """

    __slots__ = ("max_in_flight", "lag_threshold_s", "lag_halflife_s", "min_retry_s",
                 "max_retry_s", "_thresholds", "_shed_from", "_clock", "_in_flight", "_lag",
                 "_lag_at", "_admitted", "_shed")

    def __init__(self, max_in_flight: int, thresholds: Mapping[int, float] = DEFAULT_THRESHOLDS,
                 lag_threshold_s: float = 0.05, clock: Callable[[], float] = time.monotonic, *,
                 lag_halflife_s: float = 0.5, min_retry_s: float = 1.0,
                 max_retry_s: float = 5.0) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        if not lag_threshold_s > 0:
            raise ValueError(f"lag_threshold_s must be > 0, got {lag_threshold_s}")
        if not lag_halflife_s > 0:
            raise ValueError(f"lag_halflife_s must be > 0, got {lag_halflife_s}")
        if not 0 <= min_retry_s <= max_retry_s:
            raise ValueError(f"need 0 <= min_retry_s <= max_retry_s, got {min_retry_s}, "
                             f"{max_retry_s}")
        ordered = class_fractions(thresholds, "thresholds")
        self.max_in_flight = max_in_flight
        self.lag_threshold_s = lag_threshold_s
        self.lag_halflife_s = lag_halflife_s
        self.min_retry_s = min_retry_s
        self.max_retry_s = max_retry_s
        self._thresholds = ordered
        self._shed_from = min(ordered.values())  # the lowest threshold: where shedding starts
        self._clock = clock
        self._in_flight = 0
        self._lag = 0.0
        self._lag_at: float | None = None
        self._admitted = dict.fromkeys(self._thresholds, 0)
        self._shed = dict.fromkeys(self._thresholds, 0)

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet exited."""
        return self._in_flight

    @property
    def lag_s(self) -> float:
        """The smoothed event-loop lag, seconds."""
        return self._lag

    @property
    def utilisation(self) -> float:
        """max(in_flight / max_in_flight, lag / lag_threshold_s); >= 1.0 means full."""
        busy = self._in_flight / self.max_in_flight
        lagging = self._lag / self.lag_threshold_s
        return max(busy, lagging)

    def admits(self, cls: int) -> bool:
        """Would a class-`cls` request be admitted now? Counts nothing."""
        threshold = self._thresholds.get(cls)
        if threshold is None:
            raise ValueError(f"unknown shed class {cls}; known: {sorted(self._thresholds)}")
        return self.utilisation < threshold

    def enter(self, cls: int) -> bool:
        """Admit (True, now in flight: call `exit()` when done) or shed (False) a request."""
        if self.admits(cls):
            self._in_flight += 1
            self._admitted[cls] += 1
            return True
        self._shed[cls] += 1
        return False

    def exit(self) -> None:
        """An admitted request has finished. Raises RuntimeError if none is in flight."""
        if self._in_flight <= 0:
            raise RuntimeError("LoadShedder.exit() without a matching admitted enter()")
        self._in_flight -= 1

    def report_lag(self, lag_s: float) -> None:
        """Fold one event-loop lag reading (seconds >= 0) into the average.

        A time-weighted EWMA: a reading's weight is 1 - 2**(-dt / half-life),
        dt being the time since the previous reading, so irregular reports
        (the reporter itself runs late under load) weigh what they cover. A
        reading is capped at twice `lag_threshold_s`: beyond it everything is
        shed anyway, and without the cap one long stall (a GC pause, a
        blocking call) would keep shedding for seconds after it ended.
        Raises ValueError for a negative or NaN lag.
        """
        if not lag_s >= 0.0:
            raise ValueError(f"lag must be a number >= 0, got {lag_s}")
        sample = min(lag_s, 2.0 * self.lag_threshold_s)
        now = self._clock()
        if self._lag_at is None:
            self._lag = sample
        elif now > self._lag_at:
            weight = 1.0 - 0.5 ** ((now - self._lag_at) / self.lag_halflife_s)
            self._lag += weight * (sample - self._lag)
        else:
            return  # no time has passed: this reading covers nothing
        self._lag_at = now

    def retry_after_s(self) -> float:
        """Seconds a shed client should wait: `min_retry_s` where shedding
        starts (the lowest threshold), rising linearly to `max_retry_s` at
        utilisation 1.0 and staying there above it."""
        span = 1.0 - self._shed_from
        u = self.utilisation
        if span > 0:
            frac = (u - self._shed_from) / span
        else:
            frac = 1.0 if u >= 1.0 else 0.0
        frac = 0.0 if frac < 0.0 else min(frac, 1.0)
        return self.min_retry_s + (self.max_retry_s - self.min_retry_s) * frac

    def counters(self) -> dict[str, dict[int, int]]:
        """{"admitted": {cls: n}, "shed": {cls: n}} since start, copies (for counter metrics)."""
        return {"admitted": dict(self._admitted), "shed": dict(self._shed)}


class LagMonitor:
    """Event-loop lag from a timer's scheduled and actual wake-up times.

    The async loop that drives it belongs to the caller, e.g.

        monitor = LagMonitor(shedder.report_lag, clock=loop.time)
        while True:
            expected = loop.time() + 0.1
            await asyncio.sleep(0.1)
            monitor.observe(expected)

    `observe(expected_at, actual_at=None)`: both in seconds of the same clock
    (`actual_at` defaults to `clock()`); returns the lag, max(0, actual -
    expected) (a timer may fire a hair early), and passes it to `sink`, the
    smoothing consumer (typically `LoadShedder.report_lag`).
    """

    __slots__ = ("_sink", "_clock", "_last")

    def __init__(self, sink: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sink = sink
        self._clock = clock
        self._last = 0.0

    @property
    def last_s(self) -> float:
        """The most recent raw lag, seconds (for a gauge)."""
        return self._last

    def observe(self, expected_at: float, actual_at: float | None = None) -> float:
        """Record one wake-up; returns its lag in seconds."""
        if actual_at is None:
            actual_at = self._clock()
        lag = actual_at - expected_at
        lag = max(lag, 0.0)
        self._last = lag
        if self._sink is not None:
            self._sink(lag)
        return lag
