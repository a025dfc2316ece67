"""`auth`: keys, tenants, quota store and its store-down behaviour."""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from sluice.config.base import Section, check_redis_url
from sluice.config.tenants import ScopeLimits, Tenant, TenantId, TenantsFile, default_tiers


class SeedKey(Section):
    # A full API key, sk-sluice-<key id>-<secret>. Hashed at start; never stored.
    key: SecretStr
    tenant: str


class AuthSettings(Section):
    # The region's Redis for keys, tenants, quotas and routing's fleet state: redis://host:port/db
    # (one server), redis+sentinel://h:p[,h:p]/<primary>[/db], redis+cluster://h:p[,h:p] (a
    # Redis Cluster's seed nodes), or memory:// for the in-process stand-in (see
    # sluice.storage.redis).
    redis_url: str = "memory://"
    # Server-side secret mixed into every key hash (a pepper). Set it in production.
    key_pepper: SecretStr = SecretStr("sluice-dev-pepper-change-me")
    # Tenants applied at start, inline (as revision 1) or from a tenants file
    # (see TenantsFile), which then replaces the inline map.
    tenants: dict[TenantId, Tenant] = {"demo": Tenant()}
    tenants_file: str = ""
    tenants_revision: int = Field(default=1, ge=1)
    # How often each auth process looks for tenant changes made elsewhere.
    tenant_refresh_seconds: float = Field(default=1.0, gt=0, le=60)
    # Bearer tokens accepted by the admin API (keys, tenants). Empty: the
    # admin API refuses every call.
    admin_tokens: list[SecretStr] = []
    # How long a rotated key keeps working unless the rotation says otherwise.
    rotation_overlap_seconds: int = Field(default=86_400, ge=0)
    # Keys loaded into the store at start.
    seed_keys: list[SeedKey] = []
    # Create and print a fresh demo key at start (for `make run`).
    create_demo_key: bool = False
    # How long a successful key check is reused in-process without asking the
    # key store; also the longest a revoked key keeps working. 0 turns it off.
    decision_cache_ttl_seconds: float = Field(default=5.0, ge=0, le=300)
    decision_cache_max_entries: int = Field(default=100_000, ge=1)
    # While the key store is unreachable, a key whose cached decision expired
    # at most this long ago is still accepted (0: never); revocations made
    # during an outage cannot be seen anyway.
    decision_cache_stale_if_error_seconds: float = Field(default=300.0, ge=0)
    # A quota check slower than this counts as the store being down. Generous
    # on purpose: a burst opening new connections on a busy process takes
    # hundreds of ms without Redis being at fault.
    quota_timeout_ms: int = Field(default=500, ge=1)
    # After a failure, how long requests go straight to the store-down policy
    # before Redis is tried again.
    quota_retry_interval_seconds: float = Field(default=1.0, gt=0)
    # Limits by tier; a tenant's `limits` override single fields.
    tiers: dict[str, ScopeLimits] = Field(default_factory=default_tiers)
    # Hot tenants (services/auth/sluice/auth/slices.py): a tenant sending at least this many
    # requests/s to one auth process has its limits served from slices of its shared buckets,
    # leased in one Redis call and spent in memory; 0 = never.
    hot_tenant_rps: float = Field(default=50.0, ge=0)
    # How long a slice lives before its unused units go back, seconds.
    slice_seconds: float = Field(default=1.0, gt=0, le=60)
    # The most of any one limit a slice holds (per process): bounds what a process can hold
    # unused while another is refused near the limit.
    slice_max_share: float = Field(default=0.05, gt=0, le=0.5)
    # How long a stream's concurrency slot outlives a gateway that died
    # without releasing it; also caps how long one slot is held.
    stream_lease_seconds: float = Field(default=900.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _v_tenants_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("tenants_file"):
            seed = TenantsFile.read(data["tenants_file"])
            data = {**data, "tenants": seed.tenants, "tenants_revision": seed.revision}
        return data

    @model_validator(mode="after")
    def _v_tenant_tiers(self) -> AuthSettings:
        unknown = {f"{t}: {c.tier}" for t, c in self.tenants.items() if c.tier not in self.tiers}
        if unknown:
            raise ValueError(f"tenants name tiers that auth.tiers does not define ({', '.join(sorted(unknown))})")
        return self

    def limits_for(self, tenant: Tenant) -> ScopeLimits:
        return self.tiers[tenant.tier].with_overrides(tenant.limits)

    _v_redis = field_validator("redis_url")(check_redis_url)
