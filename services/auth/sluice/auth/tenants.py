"""Tenants: stored in Redis, seen by every auth process within seconds.

The store is one hash (sluice:auth:{tenants}, tenant id -> JSON with its
revision) and a change counter (sluice:auth:{tenants}:revision) bumped with
every write in the same transaction; the hash tag keeps both in one slot of
a Redis Cluster. Each auth process keeps a `TenantDirectory` in memory and polls
the counter every `auth.tenant_refresh_seconds`; only when it moved does it
read the tenants again. Polling a counter, not pub/sub, so a process that
lost its connection for a while still catches up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import redis.asyncio as aioredis
import redis.exceptions
from pydantic import TypeAdapter, ValidationError

from sluice.config.base import error_fields
from sluice.config.tenants import ScopeLimits, Tenant, TenantId
from sluice.rpc.errors import FieldViolation, Reason, SluiceError
from sluice.storage.redis import StoreUnavailable, is_cluster, reaching

log = logging.getLogger(__name__)

_TENANTS = "sluice:auth:{tenants}"
_REVISION = "sluice:auth:{tenants}:revision"
# Where tenants were stored before the hash tag (one server only); adopted once at start.
_LEGACY_TENANTS = "sluice:auth:tenants"


@dataclass(frozen=True)
class StoredTenant:
    tenant_id: str
    tenant: Tenant
    revision: int


def validate_tenant(tenant_id: str, raw: dict, tiers: set[str]) -> Tenant:
    """A tenant from outside (admin API), or INVALID_REQUEST naming each bad field."""
    problems: list[FieldViolation] = []
    try:
        TypeAdapter(TenantId).validate_python(tenant_id)
    except ValidationError:
        problems.append(FieldViolation("tenant.tenant_id", "must match ^[a-z0-9][a-z0-9_-]{0,62}$"))
    try:
        tenant = Tenant.model_validate(raw)
    except ValidationError as exc:
        problems += [FieldViolation(f"tenant.{field}", msg) for field, msg in error_fields(exc)]
        tenant = None
    if tenant is not None and tenant.tier not in tiers:
        problems.append(FieldViolation("tenant.tier", f"unknown tier {tenant.tier!r}; defined: {sorted(tiers)}"))
    if problems or tenant is None:
        raise SluiceError(Reason.INVALID_REQUEST, "invalid tenant", field_violations=problems)
    return tenant


class TenantStore:
    def __init__(self, client: aioredis.Redis) -> None:
        self._redis = client

    @staticmethod
    def _decode(tenant_id: str, raw: bytes | str) -> StoredTenant:
        doc = json.loads(raw)
        return StoredTenant(tenant_id, Tenant.model_validate(doc["tenant"]), int(doc["revision"]))

    @staticmethod
    def _encode(tenant: Tenant, revision: int) -> str:
        return json.dumps({"tenant": tenant.model_dump(mode="json", exclude_unset=True), "revision": revision})

    async def change_counter(self) -> int:
        with reaching("tenant store"):
            return int(await self._redis.get(_REVISION) or 0)

    async def all(self) -> dict[str, StoredTenant]:
        with reaching("tenant store"):
            raw = await self._redis.hgetall(_TENANTS)
        out = {}
        # The client is made without decode_responses: field names are bytes.
        for tenant_id, doc in cast(dict[bytes, bytes], raw).items():
            try:
                out[tenant_id.decode()] = self._decode(tenant_id.decode(), doc)
            except (ValueError, KeyError, ValidationError) as exc:
                # One bad record must not take every tenant down with it.
                log.error("stored tenant %s is unreadable, skipped: %s", tenant_id, exc)
        return out

    async def get(self, tenant_id: str) -> StoredTenant | None:
        with reaching("tenant store"):
            raw = await self._redis.hget(_TENANTS, tenant_id)
        return self._decode(tenant_id, raw) if raw else None

    async def put(self, tenant_id: str, tenant: Tenant, expected_revision: int | None = None,
                  revision: int | None = None) -> StoredTenant:
        """Writes a tenant at `revision` (default: one past the stored one).
        With `expected_revision`, fails with REVISION_CONFLICT if the stored
        revision (0 = absent) differs."""
        async with self._redis.pipeline(transaction=True) as tx:
            while True:
                try:
                    await tx.watch(_TENANTS)
                    raw = await tx.hget(_TENANTS, tenant_id)
                    current = self._decode(tenant_id, raw).revision if raw else 0
                    if expected_revision is not None and expected_revision != current:
                        raise SluiceError(Reason.REVISION_CONFLICT, f"tenant {tenant_id} is at revision {current}, "
                                                                    f"not {expected_revision}: read it again")
                    new = revision if revision is not None else current + 1
                    tx.multi()
                    tx.hset(_TENANTS, tenant_id, self._encode(tenant, new))
                    tx.incr(_REVISION)
                    await tx.execute()
                    return StoredTenant(tenant_id, tenant, new)
                except redis.exceptions.WatchError:
                    continue  # someone wrote in between: read again

    async def adopt_legacy(self) -> int:
        """Tenants a Sluice before the hash tag stored (under sluice:auth:tenants, on one
        server), each copied to the current hash unless it already holds that tenant, and the
        old hash deleted, so an upgrade keeps what the admin API changed. Returns how many
        the old hash held."""
        with reaching("tenant store"):
            if is_cluster(self._redis) or not await self._redis.exists(_LEGACY_TENANTS):
                return 0
            old = await self._redis.hgetall(_LEGACY_TENANTS)
            async with self._redis.pipeline(transaction=True) as tx:
                for tenant_id, doc in old.items():
                    tx.hsetnx(_TENANTS, tenant_id, doc)
                tx.incr(_REVISION)
                tx.delete(_LEGACY_TENANTS)
                await tx.execute()
        log.info("adopted %d tenants stored before the hash-tagged key", len(old))
        return len(old)

    async def seed(self, tenants: dict[str, Tenant], revision: int) -> list[str]:
        """Applies configured tenants: each one absent from the store, or
        stored at a lower revision, is written at `revision`. Returns the ids
        written."""
        stored = await self.all()
        written = []
        for tenant_id, tenant in tenants.items():
            have = stored.get(tenant_id)
            if have is None or have.revision < revision:
                await self.put(tenant_id, tenant, revision=revision)
                written.append(tenant_id)
        return written


class TenantDirectory:
    """This process's view of the tenants, with each one's effective limits
    (tier merged with overrides) worked out once per change."""

    def __init__(self, store: TenantStore, limits_for: Callable[[Tenant], ScopeLimits], refresh_s: float) -> None:
        self._store = store
        self._limits_for = limits_for
        self._refresh_s = refresh_s
        self._seen = -1
        self._tenants: dict[str, StoredTenant] = {}
        self._limits: dict[str, ScopeLimits] = {}

    def get(self, tenant_id: str) -> Tenant | None:
        stored = self._tenants.get(tenant_id)
        return stored.tenant if stored else None

    def limits(self, tenant_id: str) -> ScopeLimits | None:
        return self._limits.get(tenant_id)

    async def refresh(self) -> bool:
        """Reloads if anything changed since the last look; True if it did."""
        counter = await self._store.change_counter()
        if counter == self._seen:
            return False
        tenants = await self._store.all()
        limits = {}
        for tenant_id, stored in tenants.items():
            try:
                limits[tenant_id] = self._limits_for(stored.tenant)
            except KeyError:
                # Without its tier's limits it would run unlimited: keep it out.
                log.error("tenant %s names tier %s, which auth.tiers does not define: its keys are refused",
                          tenant_id, stored.tenant.tier)
        tenants = {t: stored for t, stored in tenants.items() if t in limits}
        self._tenants, self._limits, self._seen = tenants, limits, counter
        return True

    async def follow(self) -> None:
        """Refreshes forever; store outages are logged and ridden out."""
        failing = False
        while True:
            await asyncio.sleep(self._refresh_s)
            try:
                if await self.refresh():
                    log.info("tenants reloaded (%d)", len(self._tenants))
                failing = False
            except StoreUnavailable as exc:
                if not failing:
                    log.warning("cannot refresh tenants (%s); serving the last known set", type(exc).__name__)
                failing = True
            except Exception:  # following must outlive any one bad read
                log.exception("refreshing tenants failed; serving the last known set")

    def all(self) -> list[StoredTenant]:
        return [self._tenants[t] for t in sorted(self._tenants)]
