"""Resolves an API key to the principal it belongs to."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from sluice.auth import keys
from sluice.auth.decision_cache import DecisionCache
from sluice.auth.keystore import KeyStore
from sluice.auth.v1 import principal_pb2
from sluice.config.tenants import Tenant
from sluice.rpc.errors import Reason, SluiceError
from sluice.storage.redis import StoreUnavailable
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

# One message for every bad key, so a caller learns nothing about which part was wrong.
_INVALID = "invalid x-api-key"


class TenantLookup(Protocol):
    def get(self, tenant_id: str) -> Tenant | None: ...


class Authenticator:
    def __init__(self, store: KeyStore, pepper: bytes, tenants: TenantLookup,
                 cache: DecisionCache | None = None, clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
                 ) -> None:
        self._store = store
        self._pepper = pepper
        self._tenants = tenants
        self._clock_ms = clock_ms
        self._cache = cache if cache is not None else DecisionCache(ttl_s=0, max_entries=1)

    async def authenticate(self, api_key: str) -> principal_pb2.Principal:
        """The principal (tenant, key id, tier, region, the tenant's
        settings) of a presented key `sk-sluice-<id>-<secret>`, from the
        decision cache or the key store (the secret compared as a peppered
        hash, in constant time). Raises SluiceError: MISSING_API_KEY (401)
        for "", MALFORMED_API_KEY or INVALID_API_KEY (401) for a key that is
        not one or is unknown, revoked or expired (one message for all, so
        a caller learns nothing), DEPENDENCY_UNAVAILABLE (503) when the store
        cannot answer and no cached decision may stand in."""
        if not api_key:
            raise SluiceError(Reason.MISSING_API_KEY, "x-api-key header is required")
        parsed = keys.parse(api_key)
        if parsed is None:
            raise SluiceError(Reason.MALFORMED_API_KEY, _INVALID)
        principal = self._cache.get(api_key)
        if principal is not None:
            return principal
        try:
            principal = await self._lookup(parsed)
        except SluiceError as err:
            stale = self._cache.get_stale(api_key) if err.reason is Reason.DEPENDENCY_UNAVAILABLE else None
            if stale is None:
                raise
            metrics.AUTH_STALE_DECISIONS.inc()
            return stale
        self._cache.put(api_key, principal)
        return principal

    async def _lookup(self, parsed: keys.ParsedKey) -> principal_pb2.Principal:
        try:
            stored = await self._store.get(parsed.key_id)
        except StoreUnavailable as exc:
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE, str(exc)) from None
        if (stored is None or not stored.usable_at(self._clock_ms())
                or not keys.matches(self._pepper, stored.salt, parsed.secret, stored.digest)):
            raise SluiceError(Reason.INVALID_API_KEY, _INVALID)
        tenant = self._tenants.get(stored.tenant_id)
        if tenant is None:
            log.warning("key %s belongs to unknown tenant %s", stored.key_id, stored.tenant_id)
            raise SluiceError(Reason.INVALID_API_KEY, _INVALID)
        return principal_pb2.Principal(
            tenant_id=stored.tenant_id,
            key_id=stored.key_id,
            tier=tenant.tier,
            region=tenant.region,
            allowed_models=tenant.allowed_models,
            default_model=tenant.default_model,
            safety_profile=tenant.safety_profile, country=tenant.country,
            audit_content=tenant.audit_content,
            continue_midstream=tenant.continue_midstream,
            routing_aliases=tenant.routing.aliases,
            model_map=tenant.routing.model_map,
            cost_target_usd=tenant.routing.cost_target_usd,
            cache=principal_pb2.CachePolicy(
                enabled=tenant.cache.enabled, mode=tenant.cache.mode, aliases=tenant.cache.aliases,
                ttl_seconds=tenant.cache.ttl_seconds, ttl_by_category=tenant.cache.ttl_by_category,
                shared_namespace=tenant.cache.shared_namespace),
        )
