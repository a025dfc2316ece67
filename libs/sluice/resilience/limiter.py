"""Adaptive concurrency: learn how many calls an upstream takes at once, and
share that limit out by priority.

`AIMDLimit` is Netflix concurrency-limits' `AIMDLimit` (loss-based: additive
increase, multiplicative decrease, as TCP Reno); Envoy's adaptive concurrency
filter (gradient controller) and Netflix's `Gradient2Limit` are the
latency-based alternatives, and anything of the `Limit` shape can replace it.
`PartitionedLimiter` shares one limit among priority classes, as Netflix's
partitioned limiter does, but with nested caps instead of guaranteed shares:
less important classes may fill only a prefix of the limit, so as it shrinks
they are refused first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Protocol

from sluice.resilience.classes import class_fractions

SUCCESS = "success"
DROPPED = "dropped"
IGNORE = "ignore"
_OUTCOMES = frozenset((SUCCESS, DROPPED, IGNORE))

# Fractions of the limit each class (and all less important ones) may fill;
# 0 is the most important class (see sluice.resilience.shedding.shed_class).
DEFAULT_SHARES: Mapping[int, float] = MappingProxyType({0: 1.0, 1: 0.85, 2: 0.6, 3: 0.4})


class Limit(Protocol):
    """A concurrency-limit algorithm: an int `limit` fed by per-call samples."""

    @property
    def limit(self) -> int: ...

    def on_sample(self, rtt_s: float, in_flight: int, dropped: bool, started_at: float | None = None,
                  now: float | None = None) -> None: ...


class AIMDLimit:
    """Netflix concurrency-limits' AIMDLimit: a concurrency limit (an int in
    [`min_limit`, `max_limit`]) that grows by one per successful sample while
    it is in use and shrinks by `backoff_ratio` on every drop.

    `on_sample(rtt_s, in_flight, dropped)`: `rtt_s` is the call's duration in
    seconds, `in_flight` the calls in flight when it started (itself included),
    `dropped` whether the upstream refused it for overload (429, 529, 503) or
    it timed out. A drop, or `rtt_s > timeout_s` when `timeout_s` is set, sets
    limit = max(min_limit, floor(limit x backoff_ratio)); otherwise, if
    `in_flight >= limit / 2`, limit += 1 (capped at `max_limit`). The
    in-flight test is Netflix's guard against growing a limit nobody uses: an
    idle upstream proves nothing about its capacity.

    One decrease per congestion episode, as TCP cuts its window once per
    round trip however many packets of it were lost (RFC 6582, NewReno): a
    drop of a call that started before the last decrease belongs to the
    episode that decrease already answered, and is ignored; and decreases
    are at least one smoothed round trip apart (the EWMA of successful
    samples' rtt_s, alpha 1/8 as TCP's SRTT in RFC 6298), since a refusal
    comes back at once while an answer takes a round trip. Without this a
    burst of 529s on 30 concurrent calls would cut the limit by 0.9**30
    (about 20-fold) and refuse traffic the provider could take. Callers that
    pass no `started_at` get Netflix's rule, every drop counts.
    Raises ValueError unless 1 <= min_limit <= initial <= max_limit and
    0.5 <= backoff_ratio < 1 (Netflix's bounds) and timeout_s > 0.
    """

    __slots__ = ("min_limit", "max_limit", "backoff_ratio", "timeout_s", "_limit", "_decreased_at", "_srtt")

    def __init__(self, initial: int = 20, min_limit: int = 1, max_limit: int = 1000,
                 backoff_ratio: float = 0.9, timeout_s: float | None = None) -> None:
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError("need 1 <= min_limit <= initial <= max_limit, got "
                             f"{min_limit}, {initial}, {max_limit}")
        if not 0.5 <= backoff_ratio < 1.0:
            raise ValueError(f"backoff_ratio must be in [0.5, 1), got {backoff_ratio}")
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = backoff_ratio
        self.timeout_s = timeout_s
        self._limit = initial
        self._decreased_at = float("-inf")
        self._srtt = 0.0

    @property
    def limit(self) -> int:
        """The current concurrency limit."""
        return self._limit

    def on_sample(self, rtt_s: float, in_flight: int, dropped: bool, started_at: float | None = None,
                  now: float | None = None) -> None:
        """Feed one finished call; see the class docstring for the rule.
        `started_at` and `now`: when the call started and ended, seconds of
        one clock (both or neither)."""
        limit = self._limit
        if dropped or (self.timeout_s is not None and rtt_s > self.timeout_s):
            if started_at is not None and now is not None:
                if started_at < self._decreased_at or now - self._decreased_at < self._srtt:
                    return  # this episode was already answered
                self._decreased_at = now
            self._limit = max(self.min_limit, int(limit * self.backoff_ratio))
        else:
            self._srtt = rtt_s if not self._srtt else self._srtt + (rtt_s - self._srtt) / 8
            if in_flight * 2 >= limit:
                self._limit = min(self.max_limit, limit + 1)


class FixedLimit:
    """A limit that never moves (adaptive concurrency turned off)."""

    __slots__ = ("_limit",)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit

    def on_sample(self, rtt_s: float, in_flight: int, dropped: bool, started_at: float | None = None,
                  now: float | None = None) -> None:
        """Samples change nothing."""


class Permit:
    """One admitted call's share of a `PartitionedLimiter`: release it exactly
    once when the call ends; further releases are no-ops."""

    __slots__ = ("cls", "_owner", "_in_flight", "_started_at")

    def __init__(self, owner: PartitionedLimiter, cls: int, in_flight: int,
                 started_at: float) -> None:
        self.cls = cls
        self._owner: PartitionedLimiter | None = owner
        self._in_flight = in_flight
        self._started_at = started_at

    def release(self, outcome: str, rtt_s: float | None = None) -> None:
        """End the call. `outcome`: "success" (a sample), "dropped" (a sample
        that shrinks the limit: the upstream was overloaded or timed out) or
        "ignore" (no sample: a client error or a cancellation says nothing
        about the upstream's capacity). `rtt_s`: the call's duration in
        seconds; None measures it on the limiter's clock from `try_acquire`.
        Raises ValueError for an unknown outcome (and then does not release).
        """
        owner = self._owner
        if owner is None:
            return
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(_OUTCOMES)}, got {outcome!r}")
        self._owner = None
        owner._in_flight -= 1
        if outcome != IGNORE:
            now = owner._clock()
            if rtt_s is None:
                rtt_s = now - self._started_at
            # A refusal since the last sample means the limit is in use, even
            # when refusing has emptied it: without this a limit cut under a
            # storm could never grow back (nothing in flight, nothing to grow on).
            in_flight = owner._limit.limit if owner._wanted else self._in_flight
            owner._wanted = False
            owner._limit.on_sample(rtt_s, in_flight, outcome == DROPPED, self._started_at, now)


class PartitionedLimiter:
    """Admits calls by priority class under one adaptive concurrency limit.

    Classes are ints, 0 the most important. `shares[c]` (0 < s <= 1, not
    increasing with c) is the fraction of the limit that class c may fill
    together with everything already in flight: a class-c call is admitted
    iff in_flight (all classes) < floor(limit x shares[c]). With shares
    {0: 1.0, 1: 0.85, 2: 0.6, 3: 0.4}, as the limit shrinks or load rises
    class 3 is refused first and class 0 only once the whole limit is in use.
    Netflix's partitioned limiter instead guarantees each partition a share and
    lets it borrow idle capacity; nested caps make the order strict, which is
    the SRE book's "Handling Overload" rule: shed the least critical first.

    When nothing is in flight any class is admitted. Without that, a limit
    that has collapsed below 1 / shares[c] would refuse class c forever, and
    with no class-0 traffic no sample would ever come to let it grow back.

    `try_acquire(cls)` returns a `Permit`, or None when refused; an unknown
    class raises ValueError. `clock` (seconds) times permits released without
    an explicit `rtt_s`.
    """

    __slots__ = ("_limit", "_shares", "_clock", "_in_flight", "_refused", "_wanted")

    def __init__(self, limit: Limit, shares: Mapping[int, float] = DEFAULT_SHARES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._shares = class_fractions(shares, "shares")
        self._clock = clock
        self._in_flight = 0
        self._refused = dict.fromkeys(self._shares, 0)
        # A call was refused since the last sample: demand exceeds the limit.
        self._wanted = False

    @property
    def limit(self) -> int:
        """The current concurrency limit (the algorithm's)."""
        return self._limit.limit

    @property
    def in_flight(self) -> int:
        """Calls admitted and not yet released, all classes."""
        return self._in_flight

    def refused(self) -> dict[int, int]:
        """Refusals so far per class, a copy (for a counter metric)."""
        return dict(self._refused)

    def try_acquire(self, cls: int) -> Permit | None:
        """A permit for one class-`cls` call, or None when refused."""
        share = self._shares.get(cls)
        if share is None:
            raise ValueError(f"unknown priority class {cls}; known: {sorted(self._shares)}")
        in_flight = self._in_flight
        if in_flight and in_flight >= int(self._limit.limit * share):
            self._refused[cls] += 1
            self._wanted = True
            return None
        self._in_flight = in_flight + 1
        return Permit(self, cls, in_flight + 1, self._clock())
