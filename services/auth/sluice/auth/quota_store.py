"""Every limit of a request checked and charged in one Redis round trip.

Two Lua scripts, run atomically by Redis, take the clock from Redis itself
(`TIME`) so gateways with skewed clocks still share one timeline:

- ADMIT checks each limit; only if all pass does it charge them all.
- SETTLE moves the charges from the estimate to the real usage and frees the
  stream slot.

Three kinds of limit:

- ``rate`` (requests and tokens per minute): GCRA, the "virtual scheduling"
  form of a token bucket that holds `limit` units and refills continuously
  at `limit / window`. One number per key (the theoretical arrival time),
  exact up to float arithmetic: in any span of t ms no more than
  ``limit + limit * t / window`` units are admitted. A burst finds the full
  bucket, so N concurrent requests against a limit of N per minute admit N
  plus whatever refilled while the burst was being served.
- ``streams`` (concurrent streams): a sorted set of leases scored by expiry.
  A gateway that dies without settling leaks its slot only until the lease
  expires (`auth.stream_lease_seconds`).
- ``budget`` (daily and monthly spend, micro-USD): a counter per UTC period,
  expiring after the period, so an unsettled reservation is forgotten with it.

Keys carry the tenant in a hash tag (`sluice:q:{tenant}:...`) so that on a
Redis Cluster all of one request's keys live in one slot.

`LocalQuotaStore` is the same arithmetic on in-process state: the store for
the embedded `memory://` mode (one process, so nothing to share) and the
fallback limiter of fail-open tiers while Redis is unreachable. The two are
held to each other by one set of tests run against both.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import redis.asyncio as aioredis
import redis.exceptions

from sluice.storage.redis import reaching

Kind = Literal["rate", "streams", "budget"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# One argument per key, "kind limit period cost": fewer, shorter arguments
# are most of what a client spends packing a script call.
_SPEC = """
local function spec(s)
  local kind, limit, period, amount = string.match(s, '^(%a+) (%S+) (%S+) (%S+)$')
  return kind, tonumber(limit), tonumber(period), tonumber(amount)
end
"""

# ARGV: lease id, lease ms, charge (1, or 0 to only look), then a spec per
# key (amount = cost).
# Reply: allowed (1/0), then per key: remaining, reset ms, retry-after ms
# (-1 when the cost alone exceeds the limit, so waiting cannot help).
ADMIT = _NOW + _SPEC + """
local lease, lease_ms, charge = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local out, allowed, plan = {0}, true, {}
for i, key in ipairs(KEYS) do
  local kind, limit, period, cost = spec(ARGV[i + 3])
  local remaining, reset, retry = 0, 0, 0
  if kind == 'rate' then
    local interval = period / limit
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local new_tat = tat + cost * interval
    if cost > limit then
      allowed, retry = false, -1
      remaining, reset = math.floor((period - (tat - now)) / interval), tat - now
    elseif new_tat - now <= period then
      plan[i] = new_tat
      remaining, reset = math.floor((period - (new_tat - now)) / interval), new_tat - now
    else
      -- at least 1 ms: 0 would read as "not this limit" (Lua numbers come back truncated)
      allowed, retry = false, math.max(1, math.ceil(new_tat - now - period))
      remaining, reset = math.floor((period - (tat - now)) / interval), tat - now
    end
  elseif kind == 'streams' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local open = redis.call('ZCARD', key)
    if open + cost <= limit then
      remaining = limit - open - cost
    else
      allowed, retry = false, 1000
    end
  else
    local spent = tonumber(redis.call('GET', key)) or 0
    if cost > limit then
      allowed, retry = false, -1
    elseif spent + cost <= limit then
      remaining = limit - spent - cost
    else
      allowed, retry, remaining = false, period, math.max(limit - spent, 0)
    end
    reset = period
  end
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end
if allowed then
  out[1] = 1
end
if allowed and charge then
  for i, key in ipairs(KEYS) do
    local kind, _, period, cost = spec(ARGV[i + 3])
    if kind == 'rate' then
      redis.call('SET', key, tostring(plan[i]), 'PX', math.ceil(plan[i] - now) + 1000)
    elseif kind == 'streams' then
      if cost <= 1 then
        redis.call('ZADD', key, now + lease_ms, lease)
      else
        -- a slice of slots (see slices.py): one member each, lease/1 .. lease/cost
        for j = 1, cost do redis.call('ZADD', key, now + lease_ms, lease .. '/' .. j) end
      end
      redis.call('PEXPIRE', key, lease_ms)
    else
      redis.call('INCRBY', key, cost)
      redis.call('PEXPIRE', key, period + 86400000)
    end
  end
end
return out
"""

# ARGV: lease id, then a spec per key (amount = actual - reserved).
SETTLE = _NOW + _SPEC + """
local lease = ARGV[1]
for i, key in ipairs(KEYS) do
  local kind, limit, period, delta = spec(ARGV[i + 1])
  if kind == 'rate' then
    local tat = tonumber(redis.call('GET', key))
    if tat and delta ~= 0 then
      local new_tat = tat + delta * period / limit
      if new_tat <= now then
        redis.call('DEL', key)
      else
        redis.call('SET', key, tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1000)
      end
    end
  elseif kind == 'streams' then
    redis.call('ZREM', key, lease)
  elseif delta ~= 0 and redis.call('EXISTS', key) == 1 then
    -- A missing counter means its period is over: nothing left to correct.
    local left = redis.call('INCRBY', key, delta)
    if left < 0 then redis.call('SET', key, 0, 'KEEPTTL') end
  end
end
return 1
"""


@dataclass(frozen=True)
class LimitCheck:
    """One limit as the scripts see it."""

    kind: Kind
    key: str
    limit: int
    # rate: the window; budget: ms until the period ends; streams: unused.
    period_ms: int
    # Units this request takes: requests, tokens, stream slots (1, or a slice's), or micro-USD.
    cost: int


def stream_members(lease_id: str, slots: int) -> list[str]:
    """The members a charge of `slots` stream slots under `lease_id` adds (as ADMIT does):
    the lease id itself for one slot, `<lease id>/1` .. `<lease id>/<slots>` for a slice."""
    return [lease_id] if slots <= 1 else [f"{lease_id}/{j}" for j in range(1, slots + 1)]


@dataclass(frozen=True)
class LimitState:
    remaining: int
    reset_ms: int
    # 0 when within the limit; -1 when the cost alone exceeds it.
    retry_after_ms: int
    # A stream slot served from a slice (slices.py): the sorted-set member holding it, which
    # settling frees instead of the request's lease id.
    slot: str = ""


class QuotaStore(Protocol):
    """Where limits are counted (ADMIT and SETTLE above; `release` frees stream slots by
    member, for slices). The methods raise sluice.storage.redis.StoreUnavailable when the
    store cannot answer."""

    async def admit(self, checks: list[LimitCheck], lease_id: str, lease_ms: int, charge: bool = True
                    ) -> tuple[bool, list[LimitState]]: ...
    async def settle(self, checks: list[LimitCheck], lease_id: str, deltas: list[int],
                     slots: Mapping[str, str] | None = None) -> None: ...
    async def release(self, check: LimitCheck, members: list[str]) -> None: ...


class _Script:
    """One Lua script run by its SHA-1 (EVALSHA), loaded first (SCRIPT LOAD: on a cluster,
    into every primary) by one caller while the others wait, and loaded again the same way
    when a server answers NOSCRIPT (a restart, or a replica promoted in a failover). Not
    redis-py's Script: there, concurrent callers meeting NOSCRIPT each load it, and on the
    async cluster client that broke connections other calls were using (seen as "Connection
    closed by server" and internal errors under 200 concurrent admissions)."""

    def __init__(self, client: aioredis.Redis, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode()).hexdigest()
        self._loaded = False
        self._loading = asyncio.Lock()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        if not self._loaded:
            await self._load()
        try:
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._loaded = False
            await self._load()
            return await self._client.evalsha(self._sha, len(keys), *keys, *args)

    async def _load(self) -> None:
        async with self._loading:
            if not self._loaded:
                await self._client.script_load(self._source)
                self._loaded = True


class RedisQuotaStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._admit = _Script(client, ADMIT)
        self._settle = _Script(client, SETTLE)

    async def admit(self, checks: list[LimitCheck], lease_id: str, lease_ms: int, charge: bool = True
                    ) -> tuple[bool, list[LimitState]]:
        args = [lease_id, lease_ms, 1 if charge else 0, *(f"{c.kind} {c.limit} {c.period_ms} {c.cost}" for c in checks)]
        with reaching("quota store"):
            reply = await self._admit(keys=[c.key for c in checks], args=args)
        states = [LimitState(int(reply[i]), int(reply[i + 1]), int(reply[i + 2])) for i in range(1, len(reply), 3)]
        return reply[0] == 1, states

    async def settle(self, checks: list[LimitCheck], lease_id: str, deltas: list[int],
                     slots: Mapping[str, str] | None = None) -> None:
        """SETTLE for `checks`; a stream slot named in `slots` (quota key -> member, taken from
        a slice) is freed by `release` instead, its member not being the lease id."""
        slots = slots or {}
        pairs = [(c, d) for c, d in zip(checks, deltas, strict=True) if c.key not in slots]
        if pairs:
            with reaching("quota store"):
                await self._settle(keys=[c.key for c, _ in pairs],
                                   args=[lease_id, *(f"{c.kind} {c.limit} {c.period_ms} {d}" for c, d in pairs)])
        for check in checks:
            if check.key in slots:
                await self.release(check, [slots[check.key]])


    async def release(self, check: LimitCheck, members: list[str]) -> None:
        """Frees the stream slots `members` hold in `check`'s sorted set: one ZREM."""
        if members:
            with reaching("quota store"):
                await self._client.zrem(check.key, *members)


_DAY_MS = 86_400_000


class _Leases:
    """Open stream leases of one key: the sorted set of the Lua version, as
    a dict for removal by id and a heap for expiry, so counting stays cheap
    however many leases are open."""

    def __init__(self) -> None:
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []

    def open_count(self, now: float) -> int:
        heap = self._heap
        while heap and heap[0][0] <= now:
            expiry, lease = heapq.heappop(heap)
            if self._expiry.get(lease) == expiry:
                del self._expiry[lease]
        return len(self._expiry)

    def add(self, lease: str, expiry: float) -> None:
        self._expiry[lease] = expiry
        heapq.heappush(self._heap, (expiry, lease))

    def remove(self, lease: str) -> None:
        if self._expiry.pop(lease, None) is not None and len(self._heap) > 2 * len(self._expiry) + 16:
            # Settled leases linger in the heap until they would expire; compact.
            self._heap = [(e, lease_id) for lease_id, e in self._expiry.items()]
            heapq.heapify(self._heap)


class LocalQuotaStore:
    """ADMIT and SETTLE above, line for line, on dicts in this process.

    Entries carry their expiry as the Redis keys do, and expired ones are
    swept as the store grows, so memory follows the live keys, not history.
    """

    def __init__(self, clock_ms: Callable[[], float] = lambda: time.time() * 1000, sweep_every: int = 10_000
                 ) -> None:
        self._clock_ms = clock_ms
        # key -> (value, expires at ms); value is a TAT, a spend, or the leases.
        self._tat: dict[str, tuple[float, float]] = {}
        self._spent: dict[str, tuple[int, float]] = {}
        self._leases: dict[str, tuple[_Leases, float]] = {}
        self._sweep_every = sweep_every
        self._writes = 0

    async def admit(self, checks: list[LimitCheck], lease_id: str, lease_ms: int, charge: bool = True
                    ) -> tuple[bool, list[LimitState]]:
        now = self._clock_ms()
        allowed, states, plan = True, [], {}
        for i, c in enumerate(checks):
            remaining, reset, retry = 0, 0.0, 0.0
            if c.kind == "rate":
                interval = c.period_ms / c.limit
                tat = max(self._live(self._tat, c.key, now) or now, now)
                new_tat = tat + c.cost * interval
                if c.cost > c.limit:
                    allowed, retry = False, -1
                    remaining, reset = math.floor((c.period_ms - (tat - now)) / interval), tat - now
                elif new_tat - now <= c.period_ms:
                    plan[i] = new_tat
                    remaining, reset = math.floor((c.period_ms - (new_tat - now)) / interval), new_tat - now
                else:
                    allowed, retry = False, max(1, math.ceil(new_tat - now - c.period_ms))  # 0 would read as no wait
                    remaining, reset = math.floor((c.period_ms - (tat - now)) / interval), tat - now
            elif c.kind == "streams":
                leases = self._live(self._leases, c.key, now)
                open_ = leases.open_count(now) if leases is not None else 0
                if open_ + c.cost <= c.limit:
                    remaining = c.limit - open_ - c.cost
                else:
                    allowed, retry = False, 1000
            else:
                spent = self._live(self._spent, c.key, now) or 0
                if c.cost > c.limit:
                    allowed, retry = False, -1
                elif spent + c.cost <= c.limit:
                    remaining = c.limit - spent - c.cost
                else:
                    allowed, retry, remaining = False, c.period_ms, max(c.limit - spent, 0)
                reset = c.period_ms
            # Redis hands Lua numbers back as integers, truncated.
            states.append(LimitState(int(remaining), int(reset), int(retry)))
        if allowed and charge:
            for i, c in enumerate(checks):
                if c.kind == "rate":
                    self._tat[c.key] = (plan[i], now + math.ceil(plan[i] - now) + 1000)
                elif c.kind == "streams":
                    leases = self._live(self._leases, c.key, now) or _Leases()
                    for member in stream_members(lease_id, c.cost):
                        leases.add(member, now + lease_ms)
                    self._leases[c.key] = (leases, now + lease_ms)
                else:
                    spent = self._live(self._spent, c.key, now) or 0
                    self._spent[c.key] = (spent + c.cost, now + c.period_ms + _DAY_MS)
            self._wrote(now)
        return allowed, states

    async def settle(self, checks: list[LimitCheck], lease_id: str, deltas: list[int],
                     slots: Mapping[str, str] | None = None) -> None:
        now = self._clock_ms()
        for c, delta in zip(checks, deltas, strict=True):
            if c.kind == "rate":
                tat = self._live(self._tat, c.key, now)
                if tat is not None and delta != 0:
                    new_tat = tat + delta * c.period_ms / c.limit
                    if new_tat <= now:
                        del self._tat[c.key]
                    else:
                        self._tat[c.key] = (new_tat, now + math.ceil(new_tat - now) + 1000)
            elif c.kind == "streams":
                entry = self._leases.get(c.key)
                if entry is not None:
                    entry[0].remove((slots or {}).get(c.key, lease_id))
            elif delta != 0:
                spent = self._live(self._spent, c.key, now)
                if spent is not None:
                    self._spent[c.key] = (max(spent + delta, 0), self._spent[c.key][1])

    async def release(self, check: LimitCheck, members: list[str]) -> None:
        entry = self._leases.get(check.key)
        if entry is not None:
            for member in members:
                entry[0].remove(member)

    @staticmethod
    def _live(table: dict, key: str, now: float):  # value type differs per table
        entry = table.get(key)
        if entry is None:
            return None
        if entry[1] <= now:
            del table[key]
            return None
        return entry[0]

    def _wrote(self, now: float) -> None:
        self._writes += 1
        if self._writes % self._sweep_every:
            return
        for table in (self._tat, self._spent, self._leases):
            for key in [k for k, (_, expires) in table.items() if expires <= now]:
                del table[key]

    def __len__(self) -> int:
        return len(self._tat) + len(self._spent) + len(self._leases)
