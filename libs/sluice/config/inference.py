"""`inference`: deployments, upstream connections and resilience (retries, breakers, hedging, adaptive concurrency)."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from sluice.config.base import Section, check_class_shares


class DeploymentEndpoint(Section):
    """Where one deployment is reached, when not at its provider's own
    endpoint for its region (a private gateway, a VPC endpoint)."""

    base_url: str = ""


class ResilienceSettings(Section):
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

    _v_shares = field_validator("concurrency_shares")(check_class_shares)

    @model_validator(mode="after")
    def _v_backoff(self) -> ResilienceSettings:
        if self.backoff_max_seconds < self.backoff_base_seconds:
            raise ValueError("backoff_max_seconds is less than backoff_base_seconds")
        if self.breaker_max_open_seconds < self.breaker_open_seconds:
            raise ValueError("breaker_max_open_seconds is less than breaker_open_seconds")
        return self


class InferenceSettings(Section):
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
