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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import redis.asyncio as aioredis

Kind = Literal["rate", "streams", "budget"]

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
"""

# ARGV: lease id, lease ms, then per key: kind, limit, period ms, cost.
# Reply: allowed (1/0), then per key: remaining, reset ms, retry-after ms
# (-1 when the cost alone exceeds the limit, so waiting cannot help).
ADMIT = _NOW + """
local lease, lease_ms = ARGV[1], tonumber(ARGV[2])
local out, allowed, plan = {0}, true, {}
for i, key in ipairs(KEYS) do
  local base = 2 + (i - 1) * 4
  local kind, limit = ARGV[base + 1], tonumber(ARGV[base + 2])
  local period, cost = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
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
      allowed, retry = false, new_tat - now - period
      remaining, reset = math.floor((period - (tat - now)) / interval), tat - now
    end
  elseif kind == 'streams' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local open = redis.call('ZCARD', key)
    if open < limit then
      remaining = limit - open - 1
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
  for i, key in ipairs(KEYS) do
    local base = 2 + (i - 1) * 4
    local kind = ARGV[base + 1]
    local period, cost = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
    if kind == 'rate' then
      redis.call('SET', key, tostring(plan[i]), 'PX', math.ceil(plan[i] - now) + 1000)
    elseif kind == 'streams' then
      redis.call('ZADD', key, now + lease_ms, lease)
      redis.call('PEXPIRE', key, lease_ms)
    else
      redis.call('INCRBY', key, cost)
      redis.call('PEXPIRE', key, period + 86400000)
    end
  end
end
return out
"""

# ARGV: lease id, then per key: kind, limit, period ms, delta (actual - reserved).
SETTLE = _NOW + """
local lease = ARGV[1]
for i, key in ipairs(KEYS) do
  local base = 1 + (i - 1) * 4
  local kind, limit = ARGV[base + 1], tonumber(ARGV[base + 2])
  local period, delta = tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
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
  elseif delta ~= 0 then
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
    # Units this request takes: requests, tokens, a slot, or micro-USD.
    cost: int


@dataclass(frozen=True)
class LimitState:
    remaining: int
    reset_ms: int
    # 0 when within the limit; -1 when the cost alone exceeds it.
    retry_after_ms: int


class QuotaStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._admit = client.register_script(ADMIT)
        self._settle = client.register_script(SETTLE)

    async def admit(self, checks: list[LimitCheck], lease_id: str, lease_ms: int) -> tuple[bool, list[LimitState]]:
        args: list[str | int] = [lease_id, lease_ms]
        for c in checks:
            args += [c.kind, c.limit, c.period_ms, c.cost]
        reply = await self._admit(keys=[c.key for c in checks], args=args)
        states = [LimitState(int(reply[i]), int(reply[i + 1]), int(reply[i + 2])) for i in range(1, len(reply), 3)]
        return reply[0] == 1, states

    async def settle(self, checks: list[LimitCheck], lease_id: str, deltas: list[int]) -> None:
        args: list[str | int] = [lease_id]
        for c, delta in zip(checks, deltas, strict=True):
            args += [c.kind, c.limit, c.period_ms, delta]
        await self._settle(keys=[c.key for c in checks], args=args)
