"""Auth service wiring."""

from __future__ import annotations

import asyncio
import contextlib

from envoy.service.auth.v3 import external_auth_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from sluice.auth.admin_servicer import AdminCredentials, AdminServicer
from sluice.auth.core import Authenticator
from sluice.auth.decision_cache import DecisionCache
from sluice.auth.envoy_servicer import EnvoyAuthorizationServicer, EnvoyRateLimitServicer
from sluice.auth.key_admin import KeyAdmin
from sluice.auth.keystore import RedisKeyStore
from sluice.auth.quota import QuotaKeeper, StoreHealth
from sluice.auth.quota_store import LocalQuotaStore, QuotaStore, RedisQuotaStore
from sluice.auth.servicer import AuthServicer
from sluice.auth.slices import SlicingQuotaStore
from sluice.auth.tenants import TenantDirectory, TenantStore
from sluice.auth.v1 import admin_service_pb2, auth_service_pb2
from sluice.catalog import load_catalog
from sluice.runtime.modules import Module, Runtime
from sluice.storage import redis as redis_storage
from sluice.storage.response_cache import connect_store


async def init(rt: Runtime) -> None:
    cfg = rt.settings.auth
    client = redis_storage.connect(cfg.redis_url)
    rt.on_stop(client.aclose)

    tenant_store = TenantStore(client)
    await tenant_store.adopt_legacy()
    await tenant_store.seed(cfg.tenants, cfg.tenants_revision)
    directory = TenantDirectory(tenant_store, cfg.limits_for, cfg.tenant_refresh_seconds)
    await directory.refresh()
    following = asyncio.get_running_loop().create_task(directory.follow())

    async def stop_following() -> None:
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following

    rt.on_stop(stop_following)

    pepper = cfg.key_pepper.get_secret_value().encode()
    key_store = RedisKeyStore(client)
    key_admin = KeyAdmin(key_store, pepper, lambda tenant_id: directory.get(tenant_id) is not None,
                         cfg.rotation_overlap_seconds)
    for seed in cfg.seed_keys:
        await key_admin.ensure_key(seed.key.get_secret_value(), seed.tenant)
    if cfg.create_demo_key:
        _, rt.announcements["demo_api_key"] = await key_admin.create(next(iter(cfg.tenants)), "demo key")

    cache = DecisionCache(cfg.decision_cache_ttl_seconds, cfg.decision_cache_max_entries,
                          cfg.decision_cache_stale_if_error_seconds)
    core = Authenticator(key_store, pepper, directory, cache)
    store: QuotaStore
    if cfg.redis_url.startswith("memory://"):
        # One process holds everything: the local limiter is the store itself.
        store, fallback = LocalQuotaStore(), None
    else:
        store, fallback = RedisQuotaStore(client), LocalQuotaStore()
        if cfg.hot_tenant_rps > 0:
            slicing = SlicingQuotaStore(store, cfg.hot_tenant_rps, cfg.slice_seconds, cfg.slice_max_share)
            rt.in_background(slicing.run(), "quota-slices")
            store = slicing
    quota = QuotaKeeper(
        store,
        directory.limits,
        load_catalog(rt.settings.catalog.path or None),
        cfg.stream_lease_seconds,
        fallback=fallback,
        timeout_s=cfg.quota_timeout_ms / 1000,
        health=StoreHealth(cfg.quota_retry_interval_seconds),
    )
    rt.serve(AuthServicer(core, quota), auth_service_pb2.DESCRIPTOR.services_by_name["AuthService"])
    # Envoy's own contracts, for an Envoy in front (deploy/envoy/).
    rt.serve(EnvoyAuthorizationServicer(core), external_auth_pb2.DESCRIPTOR.services_by_name["Authorization"])
    rt.serve(EnvoyRateLimitServicer(quota), rls_pb2.DESCRIPTOR.services_by_name["RateLimitService"])
    responses = connect_store(rt.settings)
    rt.on_stop(responses.close)
    admin = AdminServicer(AdminCredentials([t.get_secret_value() for t in cfg.admin_tokens]), key_admin,
                          tenant_store, directory, set(cfg.tiers), responses)
    rt.serve(admin, admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"])


MODULE = Module(name="auth", depends_on=(), init=init, sections=("auth", "catalog"))
