"""Resolves an API key to the principal it belongs to."""

from __future__ import annotations

import logging
import secrets

import redis.exceptions

from sluice.auth import keys
from sluice.auth.decision_cache import DecisionCache
from sluice.auth.keystore import KeyStore, StoredKey
from sluice.auth.v1 import principal_pb2
from sluice.config.settings import Tenant
from sluice.rpc.errors import Reason, SluiceError
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

# One message for every bad key, so a caller learns nothing about which part was wrong.
_INVALID = "invalid x-api-key"


class Authenticator:
    def __init__(self, store: KeyStore, pepper: bytes, tenants: dict[str, Tenant],
                 cache: DecisionCache | None = None) -> None:
        self._store = store
        self._pepper = pepper
        self._tenants = tenants
        self._cache = cache if cache is not None else DecisionCache(ttl_s=0, max_entries=1)

    async def authenticate(self, api_key: str) -> principal_pb2.Principal:
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
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            raise SluiceError(Reason.DEPENDENCY_UNAVAILABLE, f"key store unavailable: {type(exc).__name__}") from None
        if stored is None or stored.revoked or not keys.matches(self._pepper, stored.salt, parsed.secret, stored.digest):
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
        )

    async def import_key(self, api_key: str, tenant_id: str) -> str:
        """Stores the hash of a full key; returns its key id."""
        parsed = keys.parse(api_key)
        if parsed is None:
            raise ValueError("seed key is not of the form sk-sluice-<key id>-<secret>")
        if tenant_id not in self._tenants:
            raise ValueError(f"seed key names unknown tenant {tenant_id!r}")
        salt = secrets.token_bytes(16)
        await self._store.put(
            StoredKey(parsed.key_id, tenant_id, salt, keys.digest(self._pepper, salt, parsed.secret))
        )
        return parsed.key_id

    async def create_key(self, tenant_id: str) -> str:
        """Makes a new key for a tenant; the only time its secret is seen."""
        api_key = keys.generate()
        await self.import_key(api_key, tenant_id)
        return api_key
