"""Auth service wiring."""

from __future__ import annotations

from sluice.auth.core import Authenticator
from sluice.auth.decision_cache import DecisionCache
from sluice.auth.keystore import RedisKeyStore
from sluice.auth.quota import QuotaKeeper, StoreHealth
from sluice.auth.quota_store import LocalQuotaStore, RedisQuotaStore
from sluice.auth.servicer import AuthServicer
from sluice.auth.v1 import auth_service_pb2
from sluice.catalog import load_catalog
from sluice.runtime.modules import Module, Runtime
from sluice.storage import redis as redis_storage


async def init(rt: Runtime) -> None:
    cfg = rt.settings.auth
    client = redis_storage.connect(cfg.redis_url)
    rt.on_stop(client.aclose)
    cache = DecisionCache(cfg.decision_cache_ttl_seconds, cfg.decision_cache_max_entries,
                          cfg.decision_cache_stale_if_error_seconds)
    tenants = dict(cfg.tenants)
    core = Authenticator(RedisKeyStore(client), cfg.key_pepper.get_secret_value().encode(), tenants, cache)
    for seed in cfg.seed_keys:
        await core.import_key(seed.key.get_secret_value(), seed.tenant)
    if cfg.create_demo_key:
        rt.announcements["demo_api_key"] = await core.create_key(next(iter(cfg.tenants)))
    # Tier limits merged with each tenant's overrides once, not per request.
    limits = {tenant_id: cfg.limits_for(tenant) for tenant_id, tenant in tenants.items()}
    if cfg.redis_url.startswith("memory://"):
        # One process holds everything: the local limiter is the store itself.
        store, fallback = LocalQuotaStore(), None
    else:
        store, fallback = RedisQuotaStore(client), LocalQuotaStore()
    quota = QuotaKeeper(
        store,
        limits.get,
        load_catalog(rt.settings.routing.catalog_path or None),
        cfg.stream_lease_seconds,
        fallback=fallback,
        timeout_s=cfg.quota_timeout_ms / 1000,
        health=StoreHealth(cfg.quota_retry_interval_seconds),
    )
    rt.serve(AuthServicer(core, quota), auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"])


MODULE = Module(name="auth", depends_on=(), init=init)
