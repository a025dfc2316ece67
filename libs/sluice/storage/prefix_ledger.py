"""Where each prompt prefix is warm: the prompt-prefix ledger.

A provider's prompt cache is per deployment (account and endpoint) and per
model, so the ledger keeps, for each (deployment, model, prefix identity)
written there, the prefix's tokens and lifetime, as a Redis string that
expires when the provider's entry would: `sluice:prefix:<scope>:<deployment>|
<model>|<hash hex>` -> "<tokens>:<ttl seconds>" with PX = ttl. A read
refreshes it (the API refreshes an entry on each read).

Routing reads it (`warm`, one MGET) to forecast each candidate's reads and
writes and to prefer a warm deployment; the cache service writes it
(`record`, one pipeline) once the answer's usage says what happened, with
the upstream's own token counts: a request's reads and writes add up to the
prefix at its last written breakpoint exactly (tokens of earlier ones are
scaled from Sluice's estimates). `forecast` and `settle` are the pure rules
between the two. A store that is down costs a counted failure, never a
request.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions

from sluice.cache.v1 import prefix_pb2
from sluice.config import Settings
from sluice.llm.v1 import messages_pb2
from sluice.storage.redis import connect, mget
from sluice.telemetry import metrics
from sluice.wire.prefix import PrefixChain

log = logging.getLogger(__name__)

# Longest a ledger entry may claim to live (the API's longest lifetime).
_MAX_TTL_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Warm:
    """A prefix warm on one deployment: its tokens (the upstream's count
    when learnt from usage) and lifetime, seconds."""

    tokens: int
    ttl_seconds: int


def forecast(chain: PrefixChain, warm: dict[int, Warm], min_tokens: int, deployment: str, model: str = ""
             ) -> prefix_pb2.PrefixForecast:
    """What the API will do with this prompt on one deployment, given the
    blocks whose prefixes are warm there (`warm`: block -> Warm): the
    longest warm prefix at or up to 20 blocks before each breakpoint is
    read; each later breakpoint whose prefix has at least `min_tokens`
    (the model's minimum cacheable length) is written, the tokens between
    one write and the next under the later breakpoint's lifetime. Estimates
    are scaled by what the read prefix's learnt count says of them."""
    out = prefix_pb2.PrefixForecast(deployment=deployment, model=model, hit_block=-1)
    hit = chain.longest_hit(set(warm))
    scale = 1.0
    if hit >= 0:
        found = warm[hit]
        out.read_tokens, out.hit_hash, out.hit_ttl_seconds, out.hit_block = \
            found.tokens, chain.hashes[hit], found.ttl_seconds, hit
        scale = found.tokens / chain.tokens[hit] if chain.tokens[hit] else 1.0
    upto = out.read_tokens
    for point in chain.breakpoints:
        if point.block <= hit:
            continue
        tokens = round(chain.tokens[point.block] * scale)
        if tokens < min_tokens or tokens <= upto:
            continue
        if point.ttl_seconds >= 3600:
            out.write_1h_tokens += tokens - upto
        else:
            out.write_5m_tokens += tokens - upto
        upto = tokens
    return out


def plan_of(chain: PrefixChain, min_tokens: int) -> prefix_pb2.PrefixPlan:
    """The plan's breakpoints for a chain (forecasts and warnings are
    routing's to add)."""
    return prefix_pb2.PrefixPlan(min_cacheable_tokens=min_tokens, breakpoints=[
        prefix_pb2.PrefixPoint(hash=chain.hashes[p.block], block=p.block, estimated_tokens=p.estimated_tokens,
                               ttl_seconds=p.ttl_seconds) for p in chain.breakpoints])


def forecast_for(plan: prefix_pb2.PrefixPlan, deployment: str, model: str = "") -> prefix_pb2.PrefixForecast | None:
    """The plan's forecast for the candidate (deployment, model) that
    served, or None; a forecast naming no model matches any."""
    return next((f for f in plan.forecasts if f.deployment == deployment and f.model in ("", model)), None)


@dataclass(frozen=True, slots=True)
class Settlement:
    """What a served request did to the deployment's prompt cache: prefixes
    written ((hash, tokens, ttl seconds) each) and the prefix read, if any."""

    written: list[tuple[bytes, int, int]]
    refreshed: tuple[bytes, int, int] | None


def settle(plan: prefix_pb2.PrefixPlan, deployment: str, usage: messages_pb2.Usage, model: str = "") -> Settlement:
    """The ledger changes one answer's usage implies. The read is the
    forecast's warm prefix (refreshed, with the reported read count); the
    writes are the breakpoints after it, the last one holding exactly
    reads + writes tokens and earlier ones their estimates scaled to it,
    each kept if at least the model's minimum. A read the forecast did not
    expect cannot be placed and is left out."""
    mine = forecast_for(plan, deployment, model)
    hit_block = mine.hit_block if mine is not None and mine.hit_hash else -1
    read = usage.cache_read_input_tokens
    refreshed = None
    if read and hit_block >= 0:
        refreshed = (mine.hit_hash, read, mine.hit_ttl_seconds or 300)  # type: ignore[union-attr]  # hit_block >= 0: mine is set
    written: list[tuple[bytes, int, int]] = []
    total = read + usage.cache_creation_input_tokens
    later = [p for p in plan.breakpoints if p.block > hit_block]
    if usage.cache_creation_input_tokens and later:
        last = later[-1]
        for point in later:
            tokens = total if point is last else round(point.estimated_tokens * total / max(last.estimated_tokens, 1))
            if point is last or (plan.min_cacheable_tokens <= tokens < total):
                written.append((point.hash, tokens, point.ttl_seconds))
    return Settlement(written, refreshed)


def observe_accuracy(predicted: prefix_pb2.PrefixForecast | None, usage: messages_pb2.Usage) -> None:
    """Counts how a forecast compared with the reported usage (metrics)."""
    if predicted is None:
        return
    for kind, guess, actual in (
            ("read", predicted.read_tokens, usage.cache_read_input_tokens),
            ("write", predicted.write_5m_tokens + predicted.write_1h_tokens, usage.cache_creation_input_tokens)):
        outcome = "exact" if guess == actual else "over" if guess > actual else "under"
        metrics.PREFIX_PREDICTIONS.labels(kind, outcome).inc()
        metrics.PREFIX_PREDICTION_ERROR.labels(kind).observe(abs(guess - actual) / max(actual, 1))


class PrefixLedger:
    """The ledger on Redis (see the module doc). `service` names who uses
    it in the failure metric."""

    def __init__(self, redis: aioredis.Redis, scope: str, service: str) -> None:
        self._redis = redis
        # No hash tag: a Redis Cluster spreads the entries over its shards.
        self._prefix = f"sluice:prefix:{scope}:"
        self._service = service

    def _key(self, deployment: str, model: str, digest: bytes) -> str:
        return f"{self._prefix}{deployment}|{model}|{digest.hex()}"

    async def warm(self, chain: PrefixChain, places: list[tuple[str, str]]
                   ) -> dict[tuple[str, str], dict[int, Warm]]:
        """For each (deployment, model) in `places`, the blocks of `chain`
        whose prefixes are warm there. Empty on a store failure."""
        positions = chain.positions()
        keys = [self._key(d, m, chain.hashes[p]) for d, m in places for p in positions]
        try:
            values = await mget(self._redis, keys) if keys else []
        except (redis.exceptions.RedisError, OSError) as exc:
            metrics.PREFIX_LEDGER_FAILURES.labels(self._service).inc()
            log.debug("prefix ledger read failed: %s", exc)
            return {}
        out: dict[tuple[str, str], dict[int, Warm]] = {}
        n = len(positions)
        for i, place in enumerate(places):
            found = {}
            for position, value in zip(positions, values[i * n:(i + 1) * n], strict=True):
                if value is not None and (warm := _parse(value)) is not None:
                    found[position] = warm
            out[place] = found
        return out

    async def record(self, deployment: str, model: str, settlement: Settlement) -> None:
        """Writes one settlement (prefixes written and read) in one pipeline.
        Raises nothing: a failure is counted and logged."""
        entries = [*settlement.written, *([settlement.refreshed] if settlement.refreshed else [])]
        if not entries:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for digest, tokens, ttl in entries:
                    ttl = min(max(int(ttl), 1), _MAX_TTL_SECONDS)
                    pipe.set(self._key(deployment, model, digest), f"{int(tokens)}:{ttl}", px=ttl * 1000)
                await pipe.execute()
        except (redis.exceptions.RedisError, OSError) as exc:
            metrics.PREFIX_LEDGER_FAILURES.labels(self._service).inc()
            log.warning("prefix ledger write failed: %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


def _parse(value: Any) -> Warm | None:
    """A stored "<tokens>:<ttl>", or None for anything else (a shared store:
    whatever is in it must not stop the reader)."""
    try:
        tokens, ttl = (value.decode() if isinstance(value, bytes) else value).split(":")
        warm = Warm(int(tokens), int(ttl))
    except (ValueError, UnicodeDecodeError, AttributeError):
        return None
    return warm if warm.tokens >= 0 and 0 < warm.ttl_seconds <= _MAX_TTL_SECONDS else None


def connect_ledger(settings: Settings, service: str) -> PrefixLedger:
    """The ledger for `service` ("routing", "cache") on the region's Redis
    (auth.redis_url), scoped to cache.prefix_scope or the region."""
    return PrefixLedger(connect(settings.auth.redis_url, max_connections=4),
                        settings.cache.prefix_scope or settings.region, service)
