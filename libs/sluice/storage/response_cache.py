"""The exact response cache's store: compressed answers on Redis, and
generation counters that invalidate them.

Keys (the scope is normally the region; no hash tag, so a Redis Cluster spreads a region's
entries, even one hot tenant's, over every shard):
- `sluice:rc:<scope>:e:<namespace>:<requested name>:<request digest hex>` -> zlib-compressed
  `sluice.cache.v1.StoredEntry`, with the entry's TTL (PX).
- `sluice:rc:<scope>:g:<what>` -> integer generation of "all", a namespace
  ("ns:<namespace>"), an alias ("a:<alias>" for every tenant,
  "na:<namespace>:<alias>" for one) and a prompt version
  ("p:<namespace>:<tag>"). An entry records the generations it was stored
  under; invalidating bumps one (INCR) and every entry stored before under
  it stops matching, left to expire or be evicted. So a lookup is one MGET
  (the entry and its five generations; on a cluster one per slot, sent together) and an invalidation one INCR,
  however many entries it covers.

The memory bound is Redis's own: run the response cache on a Redis with
`maxmemory` and `maxmemory-policy allkeys-lru` (cache.redis_url), where an
evicted entry is simply a miss; entries larger than cache.max_entry_bytes
(compressed) are not stored at all. Every call has a deadline
(cache.store_timeout_seconds); a store that is down or slow is a bypass for
the request, never an error.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import redis.asyncio as aioredis
import redis.exceptions

from sluice.auth.v1 import principal_pb2
from sluice.config import Settings
from sluice.storage.redis import connect, mget


def namespace_of(principal: principal_pb2.Principal) -> str:
    """Whose cached answers and prompt prefixes a request's are: its
    tenant's ("tenant:<id>"), or the shared namespace it names
    ("shared:<name>")."""
    return namespace_for(principal.tenant_id, principal.cache.shared_namespace)


def namespace_for(tenant_id: str, shared_namespace: str = "") -> str:
    """A tenant's namespace from its id and the shared namespace it names."""
    return f"shared:{shared_namespace}" if shared_namespace else f"tenant:{tenant_id}"


def generation(namespace: str = "", alias: str = "", prompt_version: str = "") -> str:
    """The name of one generation (module doc): "all" (nothing named), a
    namespace's, an alias's (of every tenant, or of one namespace), or a
    namespace's prompt version."""
    if prompt_version:
        return f"p:{namespace}:{prompt_version}"
    if alias:
        return f"na:{namespace}:{alias}" if namespace else f"a:{alias}"
    return f"ns:{namespace}" if namespace else "all"


def resolve_mode(policy: principal_pb2.CachePolicy, header: str, requested: str) -> tuple[str, str]:
    """(mode, reason) for a request: the x-sluice-cache header's mode when
    sent, else the requested model name's in the tenant's aliases, else the
    tenant's mode; "off" with reason "tenant_disabled" when the tenant is
    disabled, "unknown_mode" for a mode Sluice does not know. `header`:
    the x-sluice-cache value ("" when not sent)."""
    if policy.HasField("enabled") and not policy.enabled:
        return "off", "tenant_disabled"
    mode = header or policy.aliases.get(requested, "") or policy.mode or "off"
    if mode not in ("off", "read-only", "read-write"):
        return "off", "unknown_mode"  # a caller that skipped the gateway's check
    return mode, ("mode_off" if mode == "off" else "")


class StoreUnavailable(Exception):
    """The store did not answer within its deadline, or failed."""


@dataclass(frozen=True, slots=True)
class Address:
    """Where an answer lives: namespace, the requested model name (alias),
    prompt version tag and the request digest (bytes)."""

    namespace: str
    alias: str
    prompt_version: str
    digest: bytes


class ResponseStore:
    """The store (module doc) on one Redis client."""

    def __init__(self, redis: aioredis.Redis, scope: str, timeout_s: float) -> None:
        self._redis = redis
        self._prefix = f"sluice:rc:{scope}:"
        self._timeout = timeout_s

    def _entry(self, address: Address) -> str:
        # The name as requested is part of where an answer lives, so the
        # generations read are always the writer's (an alias invalidated
        # reaches exactly the answers stored under it).
        return f"{self._prefix}e:{address.namespace}:{address.alias}:{address.digest.hex()}"

    def _generations(self, address: Address) -> list[str]:
        ns, alias = address.namespace, address.alias
        return [self._prefix + "g:" + name for name in (
            generation(), generation(ns), generation(alias=alias), generation(ns, alias),
            generation(ns, prompt_version=address.prompt_version))]

    async def _run(self, call):
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except (TimeoutError, redis.exceptions.RedisError, OSError) as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from None

    async def get(self, address: Address) -> tuple[bytes | None, list[int]]:
        """(the stored blob or None, the current generations) in one MGET.
        Raises StoreUnavailable."""
        values = await self._run(mget(self._redis, [self._entry(address), *self._generations(address)]))
        return values[0], [_int(v) for v in values[1:]]

    async def put(self, address: Address, blob: bytes, ttl_seconds: int) -> None:
        """Keeps `blob` for `ttl_seconds`. Raises StoreUnavailable."""
        await self._run(self._redis.set(self._entry(address), blob, ex=max(int(ttl_seconds), 1)))

    async def bump(self, what: str) -> int:
        """Invalidates one generation (`what` as `generation` names it, e.g.
        "ns:tenant:acme"); returns its new number. Raises StoreUnavailable."""
        return int(await self._run(self._redis.incr(self._prefix + "g:" + what)))

    async def close(self) -> None:
        await self._redis.aclose()


def _int(value: bytes | None) -> int:
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def connect_store(settings: Settings) -> ResponseStore:
    """The response store from settings: cache.redis_url (else
    auth.redis_url), keys scoped to cache.prefix_scope or the region."""
    return ResponseStore(connect(settings.cache.redis_url or settings.auth.redis_url, max_connections=16),
                         settings.cache.prefix_scope or settings.region, settings.cache.store_timeout_seconds)
