"""What the replicas of a region share about its deployments and routing:
latency history, circuit-breaker state and the cost controller's shift.

Inference processes write (each attempt's time to first token and output
rate, each breaker that opens or closes); routing processes read a
snapshot every `interval` seconds in the background, so no request waits
on the store. Both go through the region's Redis (`auth.redis_url`); in
the embedded `memory://` mode the in-process stand-in is shared by the
services of the one process.

Keys carry the region as a hash tag (`sluice:fleet:{region}:...`), so on a
Redis Cluster one snapshot is one slot:
- `...:lat:<minute>`: hash, per deployment `<dep>|n`, `<dep>|ttft` (sum of
  seconds), `<dep>|rn`, `<dep>|rate` (sum of output tokens per second);
  expires after an hour. A snapshot averages the last `window_minutes`.
- `...:breakers`: hash `<dep>|<replica>` -> unix seconds its open breaker
  lets a probe through; the field is deleted when it closes. A deployment
  is unhealthy while any replica's breaker is open.
- `...:cost-shift`: hash scope -> the controller's shift (see
  sluice.routing.controller).

Writes are batched per interval (one pipeline); a store that is down costs
a counted failure and the local view, never a request.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import redis.exceptions

from sluice.config import Settings
from sluice.storage.redis import connect
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

_LAT_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Latency:
    """One deployment's recent latency: mean time to first token (seconds)
    over `samples` answers, mean output rate (tokens/second) over
    `rate_samples` (0 when none)."""

    ttft_s: float
    samples: int
    output_tps: float
    rate_samples: int


@dataclass(frozen=True)
class Snapshot:
    """The fleet's view at `taken` (unix seconds)."""

    latency: dict[str, Latency] = field(default_factory=dict)
    unhealthy: frozenset[str] = frozenset()
    shifts: dict[str, float] = field(default_factory=dict)
    taken: float = 0.0


class FleetStore:
    """The shared view (module doc). `scope` is the region (or
    routing.fleet_scope); `replica` names this process in breaker fields;
    `clock` is unix seconds (tests set it)."""

    def __init__(self, client: aioredis.Redis, scope: str, replica: str, service: str,
                 window_minutes: int = 5, clock: Callable[[], float] = time.time) -> None:
        self._redis = client
        self._prefix = f"sluice:fleet:{{{scope}}}:"
        self._replica = replica
        self._service = service
        self._window = window_minutes
        self._clock = clock
        self._lat: dict[str, list[float]] = {}
        self._breakers: dict[str, float | None] = {}

    # -- writes (inference) -------------------------------------------------------------

    def observe_ttft(self, deployment: str, seconds: float) -> None:
        sums = self._lat.setdefault(deployment, [0, 0.0, 0, 0.0])
        sums[0] += 1
        sums[1] += seconds

    def observe_output_rate(self, deployment: str, tokens_per_second: float) -> None:
        sums = self._lat.setdefault(deployment, [0, 0.0, 0, 0.0])
        sums[2] += 1
        sums[3] += tokens_per_second

    def breaker(self, deployment: str, open_until: float | None) -> None:
        """This replica's breaker for `deployment` opened (until `open_until`,
        unix seconds) or closed (None)."""
        self._breakers[deployment] = open_until

    async def flush(self) -> None:
        """Sends what was observed since the last flush, in one round trip."""
        lat, self._lat = self._lat, {}
        breakers, self._breakers = self._breakers, {}
        if not lat and not breakers:
            return
        key = f"{self._prefix}lat:{int(self._clock() // 60)}"
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for dep, (n, ttft, rn, rate) in lat.items():
                    if n:
                        pipe.hincrby(key, f"{dep}|n", int(n))
                        pipe.hincrbyfloat(key, f"{dep}|ttft", ttft)
                    if rn:
                        pipe.hincrby(key, f"{dep}|rn", int(rn))
                        pipe.hincrbyfloat(key, f"{dep}|rate", rate)
                if lat:
                    pipe.expire(key, _LAT_TTL_SECONDS)
                for dep, until in breakers.items():
                    if until is None:
                        pipe.hdel(f"{self._prefix}breakers", f"{dep}|{self._replica}")
                    else:
                        pipe.hset(f"{self._prefix}breakers", f"{dep}|{self._replica}", repr(until))
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            metrics.FLEET_SYNC_FAILURES.labels(self._service).inc()
            log.debug("fleet store flush failed: %s", exc)
            # Keep breaker news for the next try; latency of a lost second does not matter.
            for dep, until in breakers.items():
                self._breakers.setdefault(dep, until)

    # -- reads (routing) ----------------------------------------------------------------

    async def refresh(self, shift_steps: dict[str, float] | None = None) -> Snapshot:
        """A new snapshot; `shift_steps` (the controller's drained steps) are
        added to the shared shifts first, in the same round trip. Raises
        redis errors (the caller keeps its last snapshot)."""
        now = self._clock()
        minute = int(now // 60)
        keys = [f"{self._prefix}lat:{m}" for m in range(minute - self._window + 1, minute + 1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for scope, step in (shift_steps or {}).items():
                pipe.hincrbyfloat(f"{self._prefix}cost-shift", scope, step)
            for key in keys:
                pipe.hgetall(key)
            pipe.hgetall(f"{self._prefix}breakers")
            pipe.hgetall(f"{self._prefix}cost-shift")
            replies = await pipe.execute()
        replies = replies[len(shift_steps or {}):]
        sums: dict[str, list[float]] = {}
        for reply in replies[:len(keys)]:
            for name, value in reply.items():
                dep, _, kind = _text(name).rpartition("|")
                slot = _SLOTS.get(kind)
                number = _number(value)
                if slot is not None and number is not None:
                    sums.setdefault(dep, [0.0, 0.0, 0.0, 0.0])[slot] += number
        latency = {dep: Latency(ttft / n if n else 0.0, int(n), rate / rn if rn else 0.0, int(rn))
                   for dep, (n, ttft, rn, rate) in sums.items()}
        breakers = {_text(name): _number(until) for name, until in replies[len(keys)].items()}
        unhealthy = frozenset(name.rpartition("|")[0] for name, until in breakers.items()
                              if until is not None and until > now)
        # Fields of replicas long gone (or unreadable) are cleared by whoever reads them.
        stale = [name for name, until in breakers.items() if until is None or until < now - _LAT_TTL_SECONDS]
        shifts = {_text(scope): number for scope, value in replies[len(keys) + 1].items()
                  if (number := _number(value)) is not None}
        out_of_range = {scope: min(max(v, 0.0), 1.0) for scope, v in shifts.items() if not 0.0 <= v <= 1.0}
        if out_of_range or stale:
            async with self._redis.pipeline(transaction=False) as pipe:
                # Clamp the shared value too (no wind-up). A replica's increment
                # landing between this read and write is lost: one step of one
                # request, which the integral makes up.
                if out_of_range:
                    pipe.hset(f"{self._prefix}cost-shift", mapping={k: repr(v) for k, v in out_of_range.items()})
                if stale:
                    pipe.hdel(f"{self._prefix}breakers", *stale)
                await pipe.execute()
            shifts.update(out_of_range)
        return Snapshot(latency, unhealthy, shifts, now)

    async def run_flushes(self, interval: float) -> None:
        """Flushes every `interval` seconds until cancelled (the writers' loop)."""
        while True:
            await asyncio.sleep(interval)
            await self.flush()

    async def close(self) -> None:
        await self._redis.aclose()


_SLOTS = {"n": 0, "ttft": 1, "rn": 2, "rate": 3}


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _number(value: bytes | str) -> float | None:
    """A stored number, or None for anything else (the store is shared:
    whatever is in it must not stop the reader)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def connect_for(settings: Settings, service: str) -> FleetStore:
    """The fleet store for `service` ("inference", "routing"): the Redis at
    auth.redis_url (or its in-process stand-in), scoped to
    routing.fleet_scope or the region."""
    return FleetStore(connect(settings.auth.redis_url, max_connections=4),
                      settings.routing.fleet_scope or settings.region, f"{socket.gethostname()}:{os.getpid()}",
                      service, window_minutes=settings.routing.latency_window_minutes)
