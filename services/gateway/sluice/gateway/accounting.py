"""What one request used and how it ended.

A `RequestRecord` follows a request through the pipeline; at the end it
settles the quota reservation (the pipeline's job) and becomes exactly one
billing and one audit event (`EventRecorder.finish`), whatever the ending:
delivered, refused, failed or cancelled; and a review event when a safety
rule flagged it for a human.

Usage is the upstream's, whole: message_start's usage merged with every
message_delta's (cumulative), including the cache-write breakdown by
lifetime, server tool requests, service tier and inference geography. Cache
writes the upstream did not break down are split by the request's own
cache_control ttls, so 1-hour writes are priced as such.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any

from sluice import call_context
from sluice.auth.v1 import auth_service_pb2, principal_pb2
from sluice.cache.v1 import prefix_pb2
from sluice.catalog.pricing import cost_micro_usd, split_cache_writes, usd
from sluice.events.emitter import EventEmitter
from sluice.events.v1 import events_pb2 as ev
from sluice.inference.v1 import inference_service_pb2 as inference_pb
from sluice.llm.v1 import messages_pb2 as m
from sluice.routing.v1 import candidate_pb2, decision_pb2
from sluice.rpc import headers
from sluice.safety.v1 import verdict_pb2
from sluice.storage.prefix_ledger import forecast_for
from sluice.telemetry import metrics
from sluice.wire import events as wire_events
from sluice.wire import jsontext
from sluice.wire.events import Event, merge_usage
from sluice.wire.request import MessagesRequest, tokens_for_chars
from sluice.wire.typed import usage_proto

log = logging.getLogger(__name__)

MESSAGES = "messages"
COUNT_TOKENS = "count_tokens"
# Deltas whose text is what the model produced (and the client received).
_DELIVERED = {"text_delta": "text", "thinking_delta": "thinking", "input_json_delta": "partial_json"}


class RequestRecord:
    """Filled in by the pipeline as the request goes; read once at the end."""

    def __init__(self, principal: principal_pb2.Principal, request: MessagesRequest,
                 operation: str = MESSAGES) -> None:
        self.principal = principal
        self.request = request
        self.operation = operation
        ctx = call_context.current()
        self.request_id = ctx.request_id if ctx else call_context.new_request_id()
        # From the request's arrival (authentication included).
        self.started = ctx.started if ctx and ctx.started else time.monotonic()
        # The request's span (sluice.telemetry.tracing), when its trace is
        # sampled, and its trace id, whenever tracing is on.
        self.span: Any = None
        self.trace_id = ""
        # Milliseconds waited on upstream models, as inference reported
        # them at the end of a served stream; None when it did not.
        self.upstream_ms: float | None = None
        # The answer's stop_reason, once its message_delta came.
        self.stop_reason = ""
        self.refusal_reason = ""
        # Set once auth admitted the request: settled however it ends.
        self.reservation: auth_service_pb2.Reservation | None = None
        self.verdict = verdict_pb2.Verdict()
        # The output filter's verdict, when the answer went through it.
        self.output_verdict: verdict_pb2.Verdict | None = None
        # The request after the safety stage's redaction, when it redacted.
        self.redacted: MessagesRequest | None = None
        self.candidates: list[candidate_pb2.Candidate] = []
        self.catalog_version = ""
        self.deployments_version = ""
        # Why the model (routing's decision), once routed.
        self.route: decision_pb2.RouteDecision | None = None
        # ... as the x-sluice-route header says it (for the request's span).
        self.route_text = ""
        # Where the tenant's inference may run, and every upstream attempt.
        self.allowed_geos: tuple[str, ...] = ()
        self.attempts: list[inference_pb.Attempt] = []
        self.served_model = ""
        self.finished = False
        self.first_token_at: float | None = None
        # count_tokens: the upstream's count (billed as nothing, recorded).
        self.counted_tokens = 0
        # Response cache: hit, miss or bypass and why; a hit's (or shared
        # flight's) producing request; the (key, policy, input digest) a
        # flight's leader stores its answer under, and whether it did.
        self.cache_status = ""
        self.cache_reason = ""
        self.cache_origin = ""
        self.store_as: tuple[bytes, str, bytes] | None = None
        self.cache_stored = False
        # The flight this request leads (its upstream call, shared).
        self.flight: Any = None
        # The prompt-cache plan routing made (breakpoints, forecasts), and
        # whether the ledger has been told what happened.
        self.prefix: prefix_pb2.PrefixPlan | None = None
        self.prefix_settled = False
        self._usage: dict[str, Any] = {}
        self._completion: list[str] = []

    @property
    def admitted(self) -> bool:
        return self.reservation is not None

    def observe(self, event: Event) -> None:
        """Takes note of one event on its way to the client."""
        kind = event.type
        if kind == wire_events.CONTENT_BLOCK_DELTA:
            delta = event.view.get("delta") or {}
            text = delta.get(_DELIVERED.get(delta.get("type", ""), ""))
            if isinstance(text, str) and text:
                if self.first_token_at is None:
                    self.first_token_at = time.monotonic()
                self._completion.append(text)
        elif kind == wire_events.MESSAGE_DELTA:
            view = event.view
            self._usage = merge_usage(self._usage, view.get("usage"))
            self.finished = True
            delta = view.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self.stop_reason = delta["stop_reason"][:64]
        elif kind == wire_events.MESSAGE_START:
            message = event.view.get("message")
            if isinstance(message, dict):
                self._usage = merge_usage({}, message.get("usage"))
                self.served_model = str(message.get("model") or "")

    def adopt_usage(self, events: list[Event]) -> None:
        """Takes the usage (and the end) of the whole answer from its events,
        whatever part of it reached this request's client (a flight's
        leader pays for the shared call)."""
        for event in events:
            if event.type in (wire_events.MESSAGE_START, wire_events.MESSAGE_DELTA):
                self.observe(event)

    def attempt(self, report: inference_pb.Attempt) -> None:
        """Takes note of one upstream attempt; a continued attempt replaces
        its own earlier "served" report (one line per attempt)."""
        last = self.attempts[-1] if self.attempts else None
        if report.outcome == "continued" and last is not None and last.outcome == "served" \
                and last.candidate == report.candidate:
            self.attempts[-1] = report
        else:
            self.attempts.append(report)

    def served(self) -> candidate_pb2.Candidate | None:
        """The candidate whose attempt answered (the last to serve, when a
        continuation took over a failed one), when inference reported one."""
        for attempt in reversed(self.attempts):
            if attempt.outcome == "served" and 0 <= attempt.candidate < len(self.candidates):
                return self.candidates[attempt.candidate]
        return None

    def residency_violation(self, usage: m.Usage) -> bool:
        """The answer reports a geography the tenant's residency excludes."""
        return bool(usage.inference_geo and self.allowed_geos and usage.inference_geo not in self.allowed_geos)

    @property
    def from_cache(self) -> bool:
        """Answered without an upstream call of its own (a response cache
        hit, or an identical request's answer shared in flight)."""
        return self.cache_status == "hit"

    def settled_usage(self) -> m.Usage:
        """What the upstream used for this request: nothing for an answer
        from the cache; else as far as the stream got, as it reported it; a
        stream stopped before its final usage (cancelled, failed) is billed
        at least the output it delivered. Cache writes come split by
        lifetime (the upstream's breakdown, else the request's ttls)."""
        if self.from_cache:
            return m.Usage()
        return self.answer_usage()

    def answer_usage(self) -> m.Usage:
        """The usage the answer reports (as `settled_usage`, whoever paid)."""
        usage = usage_proto(self._usage)
        if not self.finished and self._completion:
            usage.output_tokens = max(usage.output_tokens, tokens_for_chars(sum(map(len, self._completion))))
        written = usage.cache_creation_input_tokens
        if written and not usage.HasField("cache_creation"):
            five, hour = split_cache_writes(written, self.request.cache_breakpoints())
            usage.cache_creation.ephemeral_5m_input_tokens = five
            usage.cache_creation.ephemeral_1h_input_tokens = hour
        return usage

    def completion_text(self) -> str:
        return "".join(self._completion)


class EventRecorder:
    """Turns finished requests into billing and audit events for the emitter.
    The emitter accepts only this deployment's region; the pipeline never
    serves a tenant of another region, so every record it makes has a home."""

    def __init__(self, emitter: EventEmitter) -> None:
        self._emitter = emitter
        self.region = emitter.region

    @property
    def accepting(self) -> bool:
        return self._emitter.accepting

    def finish(self, record: RequestRecord, outcome: ev.Outcome, error_reason: str = ""
               ) -> ev.RequestSummary:
        """Emits the request's events; returns its summary (their shared part)."""
        summary = self._summary(record, outcome, error_reason)
        principal = record.principal
        billing = ev.BillingEvent(event_id=_event_id(), request=summary)
        audit = ev.AuditEvent(
            event_id=_event_id(), request=summary,
            auth=ev.AuthDecision(key_id=principal.key_id, tier=principal.tier, admitted=record.admitted,
                                 refusal_reason=record.refusal_reason),
            safety_verdict=record.verdict,
            prompt=_prompt_record(principal.audit_content, record.request, record.redacted),
            completion=_text_record(principal.audit_content, record.completion_text()),
            output_verdict=record.output_verdict,
        )
        self._emitter.emit("billing", principal.region, principal.tenant_id, billing)
        self._emitter.emit("audit", principal.region, principal.tenant_id, audit)
        if _flagged(record.verdict) or (record.output_verdict is not None and _flagged(record.output_verdict)):
            review = ev.ReviewEvent(event_id=_event_id(), request=summary, input_verdict=record.verdict,
                                    output_verdict=record.output_verdict, prompt=audit.prompt,
                                    completion=audit.completion)
            self._emitter.emit("review", principal.region, principal.tenant_id, review)
        return summary

    @staticmethod
    def _summary(record: RequestRecord, outcome: ev.Outcome, error_reason: str) -> ev.RequestSummary:
        principal, usage = record.principal, record.settled_usage()
        now = time.monotonic()
        summary = ev.RequestSummary(
            request_id=record.request_id, tenant_id=principal.tenant_id, key_id=principal.key_id,
            region=principal.region, model_requested=record.request.model, model_served=record.served_model,
            input_tokens=usage.input_tokens or record.counted_tokens, output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_creation_5m_input_tokens=usage.cache_creation.ephemeral_5m_input_tokens,
            cache_creation_1h_input_tokens=usage.cache_creation.ephemeral_1h_input_tokens,
            server_tool_use=usage.server_tool_use, service_tier=usage.service_tier,
            inference_geo=usage.inference_geo,
            anthropic_version=headers.as_text(record.request.anthropic_version),
            anthropic_beta=[headers.as_text(b) for b in record.request.anthropic_beta],
            operation=record.operation, catalog_version=record.catalog_version,
            time_to_first_token_ms=(record.first_token_at - record.started) * 1000 if record.first_token_at else 0.0,
            total_ms=(now - record.started) * 1000, outcome=outcome, error_reason=error_reason,
        )
        summary.occurred_at.seconds, summary.occurred_at.nanos = divmod(time.time_ns(), 1_000_000_000)
        summary.deployments_version = record.deployments_version
        summary.trace_id = record.trace_id
        if record.upstream_ms is not None:
            summary.upstream_ms = record.upstream_ms
        if record.route is not None:
            summary.route.CopyFrom(record.route)
        served = record.served()
        if served is not None:
            summary.deployment, summary.provider = served.deployment, served.provider
            summary.deployment_region = served.region
        if record.residency_violation(usage):
            summary.residency_violation = True
            metrics.RESIDENCY_VIOLATIONS.labels(principal.region, summary.deployment, usage.inference_geo).inc()
            log.error("residency violation: request %s of tenant %s (region %s, allowed %s) ran in %r on %s",
                      record.request_id, principal.tenant_id, principal.region, list(record.allowed_geos),
                      usage.inference_geo, summary.deployment or "?")
        if record.operation == COUNT_TOKENS:
            return summary  # token counting is free
        if served is None:
            for candidate in record.candidates:
                if candidate.model_id == record.served_model:
                    served = candidate
                    break
                if record.served_model:
                    # Listed before the one that answered: tried and given up on.
                    summary.fallbacks.append(candidate.model_id)
        if served is not None:
            summary.cost_usd = usd(cost_micro_usd(usage, served.prices))
        _cache_record(record, summary, served)
        estimate = record.request.estimated_input_tokens()
        continuing = False
        for attempt in record.attempts:
            summary.attempts.append(_attempt_record(record, attempt, estimate, continuing))
            if attempt.outcome in ("failed", "skipped") and attempt.model_id not in summary.fallbacks \
                    and attempt.model_id != record.served_model:
                summary.fallbacks.append(attempt.model_id)
            elif attempt.outcome == "cancelled" or (attempt.outcome == "served" and continuing):
                summary.overhead_cost_usd += summary.attempts[-1].cost_usd
            continuing = attempt.outcome == "continued"
        return summary


def _cache_record(record: RequestRecord, summary: ev.RequestSummary,
                  served: candidate_pb2.Candidate | None) -> None:
    """What caching did for the request (summary.cache), and its metrics:
    a hit's saving (its answer's usage at the served candidate's prices;
    its own cost is 0), the forecast for the deployment that served, and
    what prompt cache reads saved and writes cost over base input."""
    cache = summary.cache
    cache.status, cache.reason, cache.origin_request_id = record.cache_status, record.cache_reason, record.cache_origin
    cache.stored = record.cache_stored
    prices = served.prices if served is not None else (record.candidates[0].prices if record.candidates else None)
    if record.from_cache and prices is not None and summary.outcome == ev.OUTCOME_OK:
        cache.saved_usd = usd(cost_micro_usd(record.answer_usage(), prices))
        metrics.CACHE_SAVED_USD.labels("response").inc(cache.saved_usd)
    if record.prefix is not None:
        cache.warnings.extend(record.prefix.warnings)
        forecast = forecast_for(record.prefix, served.deployment, served.model_id) if served is not None else None
        if forecast is not None:
            cache.predicted_read_tokens = forecast.read_tokens
            cache.predicted_write_tokens = forecast.write_5m_tokens + forecast.write_1h_tokens
    if prices is not None and not record.from_cache:
        cache.prefix_saved_usd = summary.cache_read_input_tokens * (prices.input - prices.cache_read) / 1_000_000
        cache.prefix_write_premium_usd = (
            summary.cache_creation_5m_input_tokens * (prices.cache_write_5m - prices.input)
            + summary.cache_creation_1h_input_tokens * (prices.cache_write_1h - prices.input)) / 1_000_000
        if cache.prefix_saved_usd:
            metrics.CACHE_SAVED_USD.labels("prefix_read").inc(cache.prefix_saved_usd)
        if cache.prefix_write_premium_usd:
            metrics.CACHE_WRITE_PREMIUM_USD.inc(cache.prefix_write_premium_usd)


def _attempt_usage(attempt: inference_pb.Attempt) -> m.Usage:
    try:
        return usage_proto(jsontext.read(attempt.usage)) if attempt.usage else m.Usage()
    except (ValueError, TypeError):
        return m.Usage()


def _attempt_record(record: RequestRecord, attempt: inference_pb.Attempt, estimate: int,
                    continuing: bool = False) -> ev.AttemptRecord:
    """One attempt as billing and audit keep it, with what it cost beyond
    what the tenant pays (overhead). A cancelled attempt (a hedge that
    lost) is priced at what it reported, or at the request's estimated
    input when it reported nothing: the provider may bill a prompt it
    already read. A continuation (`continuing`: it took over a continued
    attempt) costs its input, the prompt and the prefill read again; the
    tenant pays the first attempt's input and the whole output. Failed and
    skipped attempts cost nothing (providers do not bill refusals)."""
    usage = _attempt_usage(attempt)
    out = ev.AttemptRecord(deployment=attempt.deployment, model_id=attempt.model_id, outcome=attempt.outcome,
                           reason=attempt.reason, hedge=attempt.hedge, input_tokens=usage.input_tokens,
                           output_tokens=usage.output_tokens)
    if not 0 <= attempt.candidate < len(record.candidates):
        return out
    prices = record.candidates[attempt.candidate].prices
    if attempt.outcome == "cancelled":
        if not usage.input_tokens:
            usage.input_tokens = estimate
        out.cost_usd = usd(cost_micro_usd(usage, prices))
    elif attempt.outcome == "served" and continuing:
        out.cost_usd = usd(cost_micro_usd(m.Usage(input_tokens=usage.input_tokens,
                                                  cache_creation_input_tokens=usage.cache_creation_input_tokens,
                                                  cache_read_input_tokens=usage.cache_read_input_tokens), prices))
    return out


def _flagged(verdict: verdict_pb2.Verdict) -> bool:
    return any(hit.action == verdict_pb2.ACTION_FLAG for hit in verdict.hits)


def _event_id() -> str:
    # 128 random bits, as uuid4 has, without building a UUID object.
    return os.urandom(16).hex()


def _prompt_record(mode: str, request: MessagesRequest, redacted: MessagesRequest | None) -> ev.ContentRecord:
    text = request.prompt_text()
    record = ev.ContentRecord(mode=mode or "hash", chars=len(text), sha256=hashlib.sha256(request.raw).hexdigest())
    if mode == "full":
        record.text = text
    elif mode == "redacted":
        record.text = redacted.prompt_text() if redacted is not None else text
    return record


def _text_record(mode: str, text: str) -> ev.ContentRecord:
    record = ev.ContentRecord(mode=mode or "hash", chars=len(text),
                              sha256=hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest())
    if mode in ("full", "redacted"):
        # The completion as delivered: the output filter (when it redacts) ran before.
        record.text = text
    return record
