"""What a request cost its client, as metrics and as its span: the gateway's own view.

`finished` runs once per recorded request (served, refused, failed or
cancelled), in both run modes and for HTTP and gRPC clients alike, after its
billing and audit events are made: it counts the request by the status the
API would answer, observes its duration, Sluice's overhead (the duration
minus the time inference reported waiting on upstream models), time to first
token, output rate, tokens and cost, and ends the request's span with the
OpenTelemetry GenAI attributes and Sluice's own. `refused` counts the few
requests refused before they have a record (authentication, wrong region).

Metric names and labels: sluice.telemetry.metrics (bounded: the model label
is the catalog's id of the model that answered, never the client's text).
"""

from __future__ import annotations

import time
from typing import Any

from sluice.auth.v1 import principal_pb2
from sluice.events.v1 import events_pb2
from sluice.gateway.accounting import RequestRecord
from sluice.rpc.errors import REASONS, Reason, SluiceError
from sluice.safety.v1 import verdict_pb2
from sluice.telemetry import metrics, tracing
from sluice.wire.request import MessagesRequest

# What a client that went away gets counted as (nginx's "client closed request").
CLIENT_CLOSED = ("499", "client_closed")
# Output rates are measured over at least this much generation, seconds
# (shorter is mostly timer noise).
_MIN_RATE_WINDOW_S = 0.01
_ACTIONS = {verdict_pb2.ACTION_ALLOW: "allow", verdict_pb2.ACTION_REDACT: "redact",
            verdict_pb2.ACTION_FLAG: "flag", verdict_pb2.ACTION_BLOCK: "block"}


def status_of(outcome: int, error_reason: str) -> tuple[str, str]:
    """(the HTTP status the Anthropic API would answer, its error type; ""
    when served) for a request that ended with `outcome`."""
    if outcome == events_pb2.OUTCOME_OK:
        return "200", ""
    if outcome == events_pb2.OUTCOME_CANCELLED:
        return CLIENT_CLOSED
    reason = Reason.__members__.get(error_reason, Reason.INTERNAL)
    mapping = REASONS[reason]
    return str(mapping.http_status), mapping.anthropic_type


def request_span(principal: principal_pb2.Principal, request: MessagesRequest, operation: str, mode: str) -> Any:
    """The request's span (`sluice.request`), a child of the current one
    (the HTTP or gRPC server span), with what is known on arrival; None in
    a trace not sampled."""
    return tracing.child("sluice.request", attributes={
        tracing.GEN_AI_OPERATION: "chat" if operation == "messages" else operation,
        tracing.GEN_AI_SYSTEM: "anthropic", tracing.GEN_AI_REQUEST_MODEL: request.model,
        tracing.GEN_AI_REQUEST_MAX_TOKENS: request.max_tokens, tracing.TENANT: principal.tenant_id,
        tracing.MODE: mode, "sluice.stream": bool(request.stream)})


def refused(mode: str, route: str, err: SluiceError, span: Any = None) -> None:
    """Counts a request refused before it had a record; fails its span."""
    metrics.GATEWAY_REQUESTS.labels(mode, route, *status_of(events_pb2.OUTCOME_ERROR, err.reason.name)).inc()
    if span is not None:
        tracing.fail(span, err.reason.value, err.message)
        span.end()


def finished(record: RequestRecord, summary: events_pb2.RequestSummary | None, outcome: int, error_reason: str,
             mode: str, tenant_label: bool) -> None:
    """Metrics and the span of one recorded request (module doc).
    `summary` is None when its events could not be made (a failing disk):
    the request is still counted and timed."""
    now = time.monotonic()
    route = record.operation
    status, error_type = status_of(outcome, error_reason)
    metrics.GATEWAY_REQUESTS.labels(mode, route, status, error_type).inc()
    total = now - record.started
    metrics.GATEWAY_REQUEST_SECONDS.labels(mode, route, "true" if record.request.stream else "false").observe(total)
    follower = record.from_cache and record.cache_reason == "single_flight"
    if record.upstream_ms is not None or (not record.attempts and not follower):
        # Known: what inference reported, or no upstream call of its own (a
        # refusal, a response cache hit). A follower of an identical request's
        # call waited on that call, which no report of its own measures.
        upstream = (record.upstream_ms or 0.0) / 1000
        metrics.GATEWAY_OVERHEAD_SECONDS.labels(mode, route).observe(max(total - upstream, 0.0))
    model = record.served_model
    if model and record.first_token_at is not None:
        metrics.GATEWAY_TTFT_SECONDS.labels(mode, model).observe(record.first_token_at - record.started)
    if summary is not None:
        _usage_and_cost(record, summary, outcome, tenant_label)
    span = record.span
    if span is not None:
        _end_span(span, record, summary, status, error_type, error_reason)


def _usage_and_cost(record: RequestRecord, summary: events_pb2.RequestSummary, outcome: int,
                    tenant_label: bool) -> None:
    model = summary.model_served
    if not model or record.operation != "messages":
        return
    for token_type, count in (("input", summary.input_tokens), ("output", summary.output_tokens),
                              ("cache_read", summary.cache_read_input_tokens),
                              ("cache_write", summary.cache_creation_input_tokens)):
        if count:
            metrics.GATEWAY_TOKENS.labels(model, token_type).inc(count)
    if summary.cost_usd:
        metrics.GATEWAY_COST_USD.labels(model, summary.tenant_id if tenant_label else "").inc(summary.cost_usd)
    if outcome == events_pb2.OUTCOME_OK:
        metrics.GATEWAY_REQUEST_COST_USD.labels(model).observe(summary.cost_usd)
        # The upstream's generation rate: its output over the wait after the
        # serving attempt's first event (what inference reported), so buffered
        # answers count too and the gateway's own batching does not.
        served = next((a for a in reversed(record.attempts) if a.outcome == "served"), None)
        if served is not None and record.upstream_ms is not None and summary.output_tokens:
            generating = (record.upstream_ms - served.time_to_first_event_ms) / 1000
            if generating >= _MIN_RATE_WINDOW_S:
                metrics.GATEWAY_OUTPUT_TOKENS_PER_SECOND.labels(model).observe(summary.output_tokens / generating)


def _end_span(span: Any, record: RequestRecord, summary: events_pb2.RequestSummary | None, status: str,
              error_type: str, error_reason: str) -> None:
    if span.is_recording():
        attributes: dict[str, Any] = {tracing.REQUEST_ID: record.request_id, "http.response.status_code": int(status),
                                      tracing.SAFETY_ACTION: _ACTIONS.get(record.verdict.action, "allow")}
        if record.cache_status:
            attributes[tracing.CACHE_RESULT] = record.cache_status
        if record.served_model:
            attributes[tracing.GEN_AI_RESPONSE_MODEL] = record.served_model
        if record.route_text:
            attributes[tracing.ROUTE] = record.route_text  # as the x-sluice-route header says it
        if summary is not None:
            attributes.update({tracing.GEN_AI_INPUT_TOKENS: summary.input_tokens,
                               tracing.GEN_AI_OUTPUT_TOKENS: summary.output_tokens,
                               "sluice.cost_usd": summary.cost_usd})
            if summary.deployment:
                attributes[tracing.DEPLOYMENT] = summary.deployment
        if record.stop_reason:
            attributes[tracing.GEN_AI_FINISH_REASONS] = [record.stop_reason]
        span.set_attributes(attributes)
        if error_type:
            tracing.fail(span, error_reason or error_type)
    span.end()
