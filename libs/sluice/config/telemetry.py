"""`telemetry`: traces, and what metrics and alert rules compare against."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sluice.config.base import Section


class TracingSettings(Section):
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


class TelemetrySettings(Section):
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
