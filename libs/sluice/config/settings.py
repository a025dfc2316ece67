"""Sluice's static settings.

Read from a YAML file (``--config`` or ``SLUICE_CONFIG``) and overridden by
environment variables: ``SLUICE_<SECTION>__<KEY>``, e.g.
``SLUICE_AUTH__REDIS_URL=redis://10.0.0.5:6379/0``. Every field is checked
before anything binds a port; all problems are reported at once, each named
by its dotted key. Unknown keys are errors, so a typo cannot be ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from sluice.resilience.classes import class_fractions
from sluice.services import SERVICES

SERVICE_NAMES = SERVICES  # an endpoint each, default ports in this order
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):\d{1,5}$")


class ConfigError(Exception):
    """The configuration is invalid; the message lists every problem."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_address(value: str) -> str:
    if not _ADDRESS.match(value):
        raise ValueError(f"must be host:port, got {value!r}")
    return value


class Endpoint(_Section):
    """Where one service is reached (from others) and where it listens (its own process)."""

    # gRPC address others dial, host:port (a Kubernetes Service name in a
    # cluster). Port 0 picks a free port (tests).
    grpc: str
    # Where the service's own process binds its gRPC server, host:port;
    # empty: `grpc` (one address for both, as on one machine). In a pod:
    # 0.0.0.0:50051 while others dial the Service's name.
    listen: str = ""
    # Prometheus /metrics and /healthz for the process, host:port; empty = off.
    metrics: str = ""

    _v_grpc = field_validator("grpc")(_check_address)

    @field_validator("listen")
    @classmethod
    def _v_listen(cls, value: str) -> str:
        return _check_address(value) if value else value

    @property
    def bind(self) -> str:
        """The address the service's own process listens on."""
        return self.listen or self.grpc

    @field_validator("metrics")
    @classmethod
    def _v_metrics(cls, value: str) -> str:
        return _check_address(value) if value else value


def _default_endpoints() -> dict[str, Endpoint]:
    return {
        name: Endpoint(grpc=f"127.0.0.1:{50051 + i}", metrics="")
        for i, name in enumerate(SERVICE_NAMES)
    }


class ServerSettings(_Section):
    # Seconds in-flight calls get to finish after SIGTERM before they are cancelled.
    drain_grace_seconds: float = Field(10.0, ge=0, le=600)
    # Largest gRPC message accepted, bytes.
    max_message_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


def _check_class_shares(value: dict[int, float]) -> dict[int, float]:
    """Shares or thresholds for every shedding class (see sluice.resilience.classes)."""
    return class_fractions(value, "per-class values", complete=True)


class GatewaySettings(_Section):
    # Anthropic-compatible HTTP facade, host:port.
    http_listen: str = "127.0.0.1:8080"
    # Deadline for a request whose client set none, seconds.
    default_timeout_seconds: float = Field(600.0, gt=0)
    # Largest HTTP request body accepted; larger gets 413 request_too_large.
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    # Deadline for each of auth, safety, cache and routing, seconds.
    stage_timeout_seconds: float = Field(2.0, gt=0)
    # While a stream is silent (the model thinking, a server tool running),
    # a `ping` event is sent this often, seconds, so that proxies with idle
    # timeouts keep the connection; 0 turns Sluice's own pings off. The
    # upstream's pings are relayed either way.
    stream_ping_interval_seconds: float = Field(10.0, ge=0)
    # Overload: utilisation is the larger of in-flight requests / max_in_flight
    # and event-loop lag / overload_lag_seconds; a request is shed (529 with
    # retry-after) when utilisation reaches its class's threshold: class 0
    # (enterprise) only at 1.0, background work first.
    max_in_flight: int = Field(4096, ge=1)
    overload_lag_seconds: float = Field(0.5, gt=0)
    shed_thresholds: dict[int, float] = {0: 1.0, 1: 0.9, 2: 0.75, 3: 0.6}

    _v_listen = field_validator("http_listen")(_check_address)
    _v_thresholds = field_validator("shed_thresholds")(_check_class_shares)


class Limits(_Section):
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


class ScopeLimits(_Section):
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


def _default_tiers() -> dict[str, ScopeLimits]:
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
# Regions name Kafka topics (sluice.billing.<region>) and storage folders.
Region = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
AuditContent = Literal["hash", "redacted", "full"]


# Routing aliases name what a request's `model` may say instead of a model
# id; they must not look like one.
RouteAlias = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$")]


class TenantRouting(_Section):
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


class TenantCache(_Section):
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


class Tenant(_Section):
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


class TenantsFile(_Section):
    """The tenants file (auth.tenants_file): kept in version control, applied
    at start. A tenant in it replaces the stored one only when `revision` is
    higher than that tenant's stored revision, so a restart does not undo
    changes made through the admin API; bump it to make the file win."""

    version: Literal[1]
    revision: int = Field(ge=1)
    tenants: dict[TenantId, Tenant]

    @classmethod
    def read(cls, path: str) -> TenantsFile:
        loaded = _read_yaml(path, "tenants file", ValueError)
        try:
            return cls.model_validate(loaded if isinstance(loaded, dict) else {})
        except ValidationError as exc:
            problems = "; ".join(f"{field}: {msg}" for field, msg in error_fields(exc))
            raise ValueError(f"tenants file {path}: {problems}") from None


def _read_yaml(path: str | os.PathLike[str], what: str, error: type[Exception]) -> Any:
    try:
        return yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from None


def error_fields(err: ValidationError) -> list[tuple[str, str]]:
    """(dotted field path, message) for each problem pydantic found."""
    return [(".".join(str(p) for p in e["loc"]) or "(root)", e["msg"]) for e in err.errors()]


class SeedKey(_Section):
    # A full API key, sk-sluice-<key id>-<secret>. Hashed at start; never stored.
    key: SecretStr
    tenant: str


class AuthSettings(_Section):
    # Key store: redis://host:port/db, or memory:// for the in-process stand-in.
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
    tiers: dict[str, ScopeLimits] = Field(default_factory=_default_tiers)
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

    @field_validator("redis_url")
    @classmethod
    def _v_redis(cls, value: str) -> str:
        if not re.match(r"^(memory|redis|rediss|unix)://", value):
            raise ValueError("must start with memory://, redis://, rediss:// or unix://")
        return value


class RoutingSettings(_Section):
    # Model catalog YAML; empty = the catalog shipped with Sluice.
    catalog_path: str = ""
    # Model for requests that name none and whose tenant sets no default.
    default_model: str = "claude-sonnet-4-6"
    # Longest candidate list (deployments of the model, then of its
    # fallbacks) handed to inference.
    max_candidates: int = Field(6, ge=1, le=64)
    # Routing policies YAML (aliases such as "auto", experiments); empty =
    # the policies shipped with Sluice.
    policies_path: str = ""
    # Task classifier artifact, the path without its .npz/.json suffix;
    # empty = the one shipped with Sluice (`sluice routing train` builds it).
    classifier_path: str = ""
    # Target blended cost per policy-routed request of the whole deployment,
    # USD (the design review's $0.012); tenants may set their own on top.
    cost_target_usd: float = Field(0.012, gt=0, le=100)
    # The cost controller's step per request at twice the target (see
    # sluice.routing.controller): larger reacts faster and wobbles more.
    cost_controller_gain: float = Field(0.01, gt=0, le=1)
    # How often latency history, breaker state and the cost shift are
    # exchanged with the region's Redis (auth.redis_url), seconds.
    fleet_interval_seconds: float = Field(1.0, gt=0, le=60)
    # Latency history read by routing: the mean of the last this many minutes.
    latency_window_minutes: int = Field(5, ge=1, le=60)
    # Who shares latency history, breaker state and the cost shift: the
    # replicas with the same scope on the same Redis. Empty = the region
    # (one Sluice deployment per region); set it when two deployments of one
    # region share a Redis (staging beside production).
    fleet_scope: str = Field("", pattern=r"^[a-z0-9_-]{0,63}$")


class CacheSettings(_Section):
    # Response cache store: its own Redis, configured with maxmemory and an
    # LRU policy (allkeys-lru) so the memory bound evicts old answers; empty
    # = auth.redis_url (fine for make run's embedded store, not for a
    # Redis that also holds quotas, which must not be evicted).
    redis_url: str = Field(default="", pattern=r"^$|^(memory|redis|rediss|unix)://")
    # Lifetime of an entry when its tenant sets none, and the longest any
    # entry gets, seconds.
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86400)
    max_ttl_seconds: int = Field(default=7 * 86400, ge=1, le=30 * 86400)
    # Largest answer kept, bytes after compression; larger ones are served
    # and not stored.
    max_entry_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # zlib level for stored answers (1 fast .. 9 small).
    compression_level: int = Field(default=6, ge=1, le=9)
    # Deadline for one store command (a loaded event loop counts too); past
    # it the request bypasses the cache.
    store_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    # Who shares the prompt-prefix ledger (where prefixes are warm), kept on
    # the region's Redis (auth.redis_url): empty = the region.
    prefix_scope: str = Field("", pattern=r"^[a-z0-9_-]{0,63}$")


class DeploymentEndpoint(_Section):
    """Where one deployment is reached, when not at its provider's own
    endpoint for its region (a private gateway, a VPC endpoint)."""

    base_url: str = ""


class ResilienceSettings(_Section):
    """How inference keeps answers flowing when upstreams fail or slow down."""

    # Attempts on one candidate before falling back to the next, for
    # retryable failures before the first event (1: no retry on the same).
    attempts_per_candidate: int = Field(2, ge=1, le=10)
    # Exponential backoff with full jitter between attempts, seconds
    # (AWS Architecture Blog, "Exponential Backoff and Jitter").
    backoff_base_seconds: float = Field(0.05, ge=0)
    backoff_max_seconds: float = Field(2.0, ge=0)
    # Retry budget: extra attempts (retries and fallbacks after the first
    # attempt) at most this fraction of requests over budget_window_seconds,
    # plus a floor per second (Finagle RetryBudget; Envoy retry_budget).
    retry_budget_ratio: float = Field(0.2, ge=0, le=10)
    retry_budget_min_per_second: float = Field(5.0, ge=0)
    budget_window_seconds: float = Field(10.0, gt=0)
    # Circuit breaker per deployment: opens on this many consecutive
    # failures, or this error rate over breaker_window_seconds once
    # breaker_min_requests were seen; half-open after breaker_open_seconds
    # (doubling on a failed probe, up to breaker_max_open_seconds).
    breaker_consecutive_failures: int = Field(5, ge=1)
    breaker_error_rate: float = Field(0.5, gt=0, le=1)
    breaker_window_seconds: float = Field(10.0, gt=0)
    breaker_min_requests: int = Field(20, ge=1)
    breaker_open_seconds: float = Field(5.0, gt=0)
    breaker_max_open_seconds: float = Field(60.0, gt=0)
    # Hedging on time to first event: a second attempt on the next candidate
    # starts when the first event is later than this percentile of the
    # deployment's observed times (or hedge_delay_seconds when set), never
    # sooner than hedge_min_delay_seconds ("The Tail at Scale", Dean and
    # Barroso, 2013). Hedges have their own budget (fraction of requests).
    hedging: bool = True
    # The events before the first token (message_start, content_block_start,
    # pings) are held so that a failure or a slow start can still be retried,
    # fallen back from or hedged; after this long, seconds from the attempt's
    # start, the answer is committed and they go to the client.
    first_token_hold_seconds: float = Field(5.0, ge=0)
    hedge_percentile: float = Field(0.95, gt=0, lt=1)
    hedge_delay_seconds: float | None = Field(None, gt=0)
    hedge_min_delay_seconds: float = Field(0.05, ge=0)
    hedge_budget_ratio: float = Field(0.05, ge=0, le=1)
    hedge_budget_min_per_second: float = Field(1.0, ge=0)
    # Adaptive concurrency per deployment (AIMD): starts here, never above
    # the deployment's max_concurrency. Off: a fixed limit of max_concurrency.
    adaptive_concurrency: bool = True
    initial_concurrency: int = Field(64, ge=1)
    # Off: no deployment is ever skipped for its failures (for comparison runs).
    circuit_breakers: bool = True
    # Share of a deployment's limit each shedding class may fill: class 0
    # (enterprise) the whole limit, background work the least.
    concurrency_shares: dict[int, float] = {0: 1.0, 1: 0.85, 2: 0.6, 3: 0.4}

    _v_shares = field_validator("concurrency_shares")(_check_class_shares)

    @model_validator(mode="after")
    def _v_backoff(self) -> ResilienceSettings:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_max_seconds is less than backoff_base_seconds")
        if self.breaker_max_open_seconds < self.breaker_open_seconds:
            raise ValueError("breaker_max_open_seconds is less than breaker_open_seconds")
        return self


class InferenceSettings(_Section):
    # The deployments file (beside the catalog); empty = the one shipped.
    deployments_path: str = ""
    # Every deployment reached through one simulator, at
    # <simulator_url>/d/<deployment> on each provider's wire, with the
    # simulator's credentials: the embedded default for `make run` and the
    # tests. Empty = the real providers (production).
    simulator_url: str = "http://127.0.0.1:8090"
    # Per-deployment endpoint overrides (otherwise the provider's endpoint
    # for the deployment's region).
    endpoints: dict[str, DeploymentEndpoint] = {}
    # Connect timeout, seconds. The read deadline is the request's own.
    connect_timeout_seconds: float = Field(5.0, gt=0)
    max_connections: int = Field(256, ge=1)
    resilience: ResilienceSettings = ResilienceSettings()


_SIM_DEPLOYMENT = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SIM_OUTCOMES = ("ok", "slow", "midstream")


class SimulatedDeployment(_Section):
    """One simulated provider deployment's behaviour (the simulator's
    ``/d/{deployment}/...`` routes; ``PUT /_sim/deployments/{deployment}``
    takes the same fields as JSON)."""

    # Endpoint region the deployment is in; when set, a Vertex path location
    # or a SigV4 credential-scope region that differs is refused (404 / 403).
    region: str = ""
    # usage.inference_geo reported when the request names none (Anthropic
    # wire); on the Vertex and Bedrock wires, reported only when set.
    inference_geo: str = ""
    # Pacing, milliseconds; None = the simulator's top-level values.
    time_to_first_token_ms: float | None = Field(None, ge=0)
    inter_token_ms: float | None = Field(None, ge=0)
    # Heavy tail: with this probability the first token waits slow_ttft_ms instead.
    slow_probability: float = Field(0.0, ge=0, le=1)
    slow_ttft_ms: float = Field(0.0, ge=0)
    # Refused before the stream, at failure_status, in the wire's error format.
    failure_rate: float = Field(0.0, ge=0, le=1)
    failure_status: int = Field(529, ge=400, le=599)
    # An `error` event (overloaded_error) after the first content delta.
    midstream_failure_rate: float = Field(0.0, ge=0, le=1)
    # Failure script, one entry per Messages request, before the rates apply:
    # "ok", "slow", "midstream" or an HTTP status ("529", "500", ...).
    outcomes: list[str] = []
    # retry-after header (seconds) on injected failures; None = none.
    retry_after_s: float | None = Field(None, ge=0)
    # Seeds the deployment's random draws, for reproducible runs.
    seed: int | None = None

    @field_validator("outcomes")
    @classmethod
    def _v_outcomes(cls, value: list[str]) -> list[str]:
        for i, item in enumerate(value):
            if item in _SIM_OUTCOMES:
                continue
            if not (item.isascii() and item.isdigit() and 400 <= int(item) <= 599):
                raise ValueError(f"outcomes[{i}]: {item!r} is not ok, slow, midstream or an HTTP status 400-599")
        return value


class SimulatorSettings(_Section):
    listen: str = "127.0.0.1:8090"
    # Delay before the first event, and between content deltas, milliseconds.
    time_to_first_token_ms: float = Field(20.0, ge=0)
    inter_token_ms: float = Field(5.0, ge=0)
    # Tokens generated when max_tokens allows; a directive can change it per request.
    output_tokens: int = Field(32, ge=1)
    # Words per content_block_delta.
    tokens_per_delta: int = Field(1, ge=1)
    # Probabilities of injected failures, for soak and fallback tests.
    failure_rate_529: float = Field(0.0, ge=0, le=1)
    failure_rate_500: float = Field(0.0, ge=0, le=1)
    # Honour in-prompt directives such as [[sim:status=529]] (tests, demos).
    allow_directives: bool = True
    # Model catalog whose facts (limits, lifecycle, what each model accepts)
    # the simulator enforces as the API would; empty = the one shipped.
    catalog_path: str = ""
    # Requests kept for GET /_sim/requests (tests compare what arrived).
    recorded_requests: int = Field(2000, ge=0)
    # Simulated deployments served under /d/{deployment}/ (Anthropic, Vertex
    # and Bedrock wires); one not listed behaves like the top-level values.
    deployments: dict[str, SimulatedDeployment] = {}
    # SigV4 access key id -> secret key the Bedrock wire verifies signatures
    # with; empty = signatures are checked for shape and scope only.
    aws_credentials: dict[str, str] = {"AKIASLUICESIM": "sluice-sim-secret"}

    _v_listen = field_validator("listen")(_check_address)

    @field_validator("deployments")
    @classmethod
    def _v_deployments(cls, value: dict[str, SimulatedDeployment]) -> dict[str, SimulatedDeployment]:
        for name in value:
            if not _SIM_DEPLOYMENT.fullmatch(name):
                raise ValueError(f"deployment name {name!r} must match [A-Za-z0-9._-]{{1,64}}")
        return value


class EventsSettings(_Section):
    """Billing and audit events: spooled to disk, then sent to this region's Kafka."""

    # This region's Kafka cluster, host:port[,host:port...]. Empty: events stay
    # in the spool, until a sink in the gateway's process stores them from
    # there (the embedded default for `make run`: `serve all,simulator,sinks`).
    kafka_bootstrap: str = ""
    # Append-only spool: every event is written (and fsync'd) here first and
    # leaves it once Kafka has acknowledged it; one subfolder per region.
    spool_dir: str = "var/spool"
    # At this size the gateway refuses new requests (503) rather than serve
    # traffic it could not bill; a warning is logged from spool_alarm_ratio.
    spool_max_bytes: int = Field(1 << 30, ge=64 * 1024)
    spool_alarm_ratio: float = Field(0.8, gt=0, le=1)
    spool_segment_bytes: int = Field(16 << 20, ge=4096)
    # Events waiting for the background writer; when full, the request path
    # writes to the spool itself rather than drop one.
    queue_max_events: int = Field(10_000, ge=1)
    # Most events per Kafka round trip (and per spool write).
    batch_max_events: int = Field(500, ge=1)
    # How long the writer gathers events before one fsync covers them all:
    # the most an event waits before it is on disk (a SIGKILL loses at most
    # this window; SIGTERM writes everything). Never adds to a request's
    # latency; shorter costs CPU: at 10 ms, fsyncs cost ~0.5 ms per request
    # at 200 requests/s on a 2-core machine.
    group_commit_ms: float = Field(50.0, ge=0, le=1000)
    # A Kafka send not acknowledged this long counts as Kafka being down;
    # it is then retried from the spool after kafka_retry_seconds.
    send_timeout_seconds: float = Field(10.0, gt=0)
    kafka_retry_seconds: float = Field(1.0, gt=0)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _v_bootstrap(cls, value: str) -> str:
        for part in filter(None, value.split(",")):
            _check_address(part.strip())
        return value


class SafetySettings(_Section):
    """The safety service's policy packs (see services/safety/README.md)."""

    # Folder of policy pack files (*.yaml). Empty: the packs shipped with
    # Sluice. A k8s ConfigMap mounted here is picked up without a restart.
    policy_dir: str = ""
    # How often the folder is checked for changed packs, seconds; 0 = never.
    reload_interval_seconds: float = Field(2.0, ge=0)


class SinksSettings(_Section):
    """`sluice serve sinks`: this region's consumer of billing and audit topics
    (or, without events.kafka_bootstrap, of the local event spool)."""

    # Where the region's records are stored (see services/sinks/README.md);
    # `sluice audit verify` and `sluice billing report` read it too.
    data_dir: str = "var/sinks"
    # Consumer group; one per region, shared by the region's sink replicas.
    group_id: str = "sluice-sinks"
    # Most records written (and fsync'd) per batch before offsets are committed.
    batch_max_records: int = Field(1000, ge=1)
    poll_timeout_ms: int = Field(500, ge=10)


class TracingSettings(_Section):
    """OpenTelemetry traces (libs/sluice/telemetry/tracing.py): a span per
    stage of every request, exported over OTLP. Off by default."""

    enabled: bool = False
    # otlp_grpc (an OTLP/gRPC receiver, host:port) or otlp_http (an OTLP/HTTP
    # receiver's traces URL, e.g. http://collector:4318/v1/traces).
    exporter: Literal["otlp_grpc", "otlp_http"] = "otlp_grpc"
    # Empty: the OTLP default for the exporter (localhost:4317, or
    # http://localhost:4318/v1/traces).
    endpoint: str = ""
    # Share of new traces kept, 0..1 (a trace the caller sampled, through its
    # traceparent, is kept whatever this says: parent-based sampling).
    sampling_ratio: float = Field(1.0, ge=0.0, le=1.0)
    # Send W3C traceparent to the upstream model too (off: a provider is
    # outside the operator's trace).
    propagate_upstream: bool = False
    # Headers on every export (a collector's auth token: reference a
    # Secret through the environment, e.g. SLUICE_TELEMETRY__TRACING__HEADERS).
    headers: dict[str, str] = Field(default_factory=dict)
    # Spans queued for export at most; past it new spans are dropped (counted
    # by the SDK), never the request.
    max_queue_size: int = Field(8192, ge=64)


class TelemetrySettings(_Section):
    """Traces, and what the metrics and alert rules compare against."""

    tracing: TracingSettings = TracingSettings()
    # Label cost metrics with the tenant (one series per tenant and model:
    # bounded only by how many tenants the region has).
    tenant_label: bool = False
    # The region's daily spend budget, USD, exported as
    # sluice_spend_budget_usd{period="day"} for the spend alert; 0 = none.
    daily_budget_usd: float = Field(0.0, ge=0)
    # The blended cost per request the region aims at, USD (the design
    # review's $0.012), exported for the cost-per-request alert.
    cost_per_request_target_usd: float = Field(0.012, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SLUICE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    # Region this deployment serves; a tenant of another region is never
    # served here, and events go only to this region's Kafka and spool.
    region: Region = "local"
    services: dict[str, Endpoint] = Field(default_factory=_default_endpoints)
    server: ServerSettings = ServerSettings()
    gateway: GatewaySettings = GatewaySettings()
    auth: AuthSettings = AuthSettings()
    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = CacheSettings()
    inference: InferenceSettings = InferenceSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    safety: SafetySettings = SafetySettings()
    events: EventsSettings = EventsSettings()
    sinks: SinksSettings = SinksSettings()
    telemetry: TelemetrySettings = TelemetrySettings()

    @field_validator("services")
    @classmethod
    def _v_services(cls, value: dict[str, Endpoint]) -> dict[str, Endpoint]:
        unknown = sorted(set(value) - set(SERVICE_NAMES))
        if unknown:
            raise ValueError(f"unknown service(s) {unknown}; known: {list(SERVICE_NAMES)}")
        merged = _default_endpoints()
        merged.update(value)
        return merged

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file (passed as init values).
        return env_settings, init_settings


def _format(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    lines += [f"  {field}: {msg}" for field, msg in error_fields(err)]
    return "\n".join(lines)


def load(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    """Loads and validates settings; raises ConfigError naming every bad key."""
    path = path or os.environ.get("SLUICE_CONFIG") or None
    data: dict[str, Any] = {}
    source = "defaults + environment"
    if path:
        source = f"{path} + environment"
        loaded = _read_yaml(path, "config file", ConfigError)
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = loaded or {}
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format(exc, source)) from None


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
