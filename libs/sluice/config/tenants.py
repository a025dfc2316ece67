"""The tenant domain: tiers and limits, a tenant's routing, cache and audit choices, and the tenants file."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints, ValidationError

from sluice.config.base import Region, Section, error_fields, read_yaml


class Limits(Section):
    """Limits for one scope: a tenant, or each one of its keys. Unset = none."""

    requests_per_minute: int | None = Field(None, ge=1)
    # Input (incl. cache reads and writes) plus output tokens.
    tokens_per_minute: int | None = Field(None, ge=1)
    concurrent_streams: int | None = Field(None, ge=1)
    # Calendar day and month in UTC.
    daily_spend_usd: float | None = Field(None, gt=0)
    monthly_spend_usd: float | None = Field(None, gt=0)

    def with_overrides(self, overrides: Limits) -> Limits:
        """These limits with every field that `overrides` sets replaced."""
        return self.model_copy(update=overrides.model_dump(exclude_unset=True))


StoreDownPolicy = Literal["fail_open", "fail_closed"]


class ScopeLimits(Section):
    tenant: Limits = Limits()
    key: Limits = Limits()
    # While Redis is unreachable: fail_open admits against a limiter local to
    # each auth process (the same limits, per process); fail_closed refuses
    # with 503 / UNAVAILABLE.
    when_store_down: StoreDownPolicy = "fail_closed"

    def with_overrides(self, overrides: ScopeLimits) -> ScopeLimits:
        return ScopeLimits(tenant=self.tenant.with_overrides(overrides.tenant),
                           key=self.key.with_overrides(overrides.key),
                           when_store_down=overrides.when_store_down if "when_store_down" in overrides.model_fields_set
                           else self.when_store_down)


def default_tiers() -> dict[str, ScopeLimits]:
    return {
        "free": ScopeLimits(
            tenant=Limits(requests_per_minute=50, tokens_per_minute=50_000, concurrent_streams=5,
                          daily_spend_usd=5, monthly_spend_usd=50),
            key=Limits(requests_per_minute=50, concurrent_streams=5),
        ),
        "standard": ScopeLimits(
            tenant=Limits(requests_per_minute=1_000, tokens_per_minute=2_000_000, concurrent_streams=100,
                          daily_spend_usd=500, monthly_spend_usd=10_000),
            key=Limits(requests_per_minute=1_000, concurrent_streams=100),
            when_store_down="fail_open",
        ),
        "enterprise": ScopeLimits(
            tenant=Limits(requests_per_minute=10_000, tokens_per_minute=20_000_000, concurrent_streams=1_000),
            when_store_down="fail_open",
        ),
    }


# Tenant ids end up in Redis keys (as hash tags), metric labels and sink paths.
TENANT_ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"


TenantId = Annotated[str, StringConstraints(pattern=TENANT_ID_PATTERN)]


AuditContent = Literal["hash", "redacted", "full"]


# Routing aliases name what a request's `model` may say instead of a model
# id; they must not look like one.
RouteAlias = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class TenantRouting(Section):
    """A tenant's routing: its own aliases (alias -> routing policy name from
    the policies file, e.g. `support-bot: frugal`), named models its policy
    routes elsewhere (`claude-opus-4-6: auto`), and its own target blended
    cost per policy-routed request (USD; 0 = only the deployment's)."""

    aliases: dict[RouteAlias, str] = {}
    model_map: dict[str, str] = {}
    cost_target_usd: float = Field(default=0.0, ge=0, le=100)


CacheMode = Literal["off", "read-only", "read-write"]


# TTL categories: a request's shape (see sluice.cache.key.category), or a
# routing task label when routing classified it.
CacheCategory = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class TenantCache(Section):
    """A tenant's exact response cache. Requests opt in with the
    x-sluice-cache header (read-write, read-only, off); without it the mode
    of the requested model name in `aliases` applies, then `mode`.
    `enabled: false` keeps every request out whatever it asks. Lifetimes:
    `ttl_by_category` (tools, media, thinking, text, or a routing task
    label such as factual_qa), then `ttl_seconds`, then cache.ttl_seconds.
    A `shared_namespace` shares entries with every tenant naming it."""

    enabled: bool = True
    mode: CacheMode = "off"
    aliases: dict[str, CacheMode] = {}
    ttl_seconds: int = Field(default=0, ge=0, le=30 * 86400)
    ttl_by_category: dict[CacheCategory, Annotated[int, Field(ge=1, le=30 * 86400)]] = {}
    shared_namespace: str = Field(default="", pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$|^$")


class Tenant(Section):
    tier: str = "standard"
    region: Region = "local"
    # Empty = every model the catalog allows in the tenant's region.
    allowed_models: list[str] = []
    default_model: str = ""
    safety_profile: str = "default"
    # ISO 3166-1 alpha-2 country the tenant mostly serves ("GB"): lets the
    # safety stage read national phone numbers written without +CC.
    country: str = Field(default="", pattern=r"^[A-Z]{2}$|^$")
    # What audit records keep of prompts and completions: a SHA-256 only,
    # the text after the safety stage's redaction, or the full text.
    audit_content: AuditContent = "hash"
    # When a text-only stream fails mid-answer, continue it on the next
    # candidate with the partial answer as an assistant prefill (on models
    # that take a prefill; never with a tool call or thinking in flight).
    continue_midstream: bool = False
    # Routing aliases, model mapping and cost target (see TenantRouting).
    routing: TenantRouting = TenantRouting()
    # Exact response cache opt-in and lifetimes (see TenantCache).
    cache: TenantCache = TenantCache()
    # Per-tenant changes to its tier's limits; only the fields set here apply.
    limits: ScopeLimits = ScopeLimits()


class TenantsFile(Section):
    """The tenants file (auth.tenants_file): kept in version control, applied
    at start. A tenant in it replaces the stored one only when `revision` is
    higher than that tenant's stored revision, so a restart does not undo
    changes made through the admin API; bump it to make the file win."""

    version: Literal[1]
    revision: int = Field(ge=1)
    tenants: dict[TenantId, Tenant]

    @classmethod
    def read(cls, path: str) -> TenantsFile:
        loaded = read_yaml(path, "tenants file", ValueError)
        try:
            return cls.model_validate(loaded if isinstance(loaded, dict) else {})
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {msg}" for field, msg in error_fields(exc))
            raise ValueError(f"tenants file {path}: {problems}") from None
