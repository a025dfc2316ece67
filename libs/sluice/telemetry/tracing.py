"""OpenTelemetry traces: a span for every stage of every request, in both run modes.

`configure` (once per process, from `telemetry.tracing`) installs a tracer
provider that samples parent-based with a ratio for new traces and exports
in batches over OTLP (gRPC or HTTP). Off, every function here is a cheap
no-op: `ENABLED` is False and `tracer()` hands out the API's non-recording
spans.

Who makes which span:
- the HTTP facade: a SERVER span per request (`POST /v1/messages`), its
  parent taken from the client's W3C `traceparent`;
- `ServiceRegistry` (sluice.rpc.registry): a SERVER span per RPC a service
  handles, named `<package>.<Service>/<Method>` (OpenTelemetry's RPC
  conventions), its parent from the caller's `traceparent` metadata over the
  network, or the caller's current span in process;
- `PropagatingStub` (sluice.rpc.client): `traceparent` on every outgoing call;
- the gateway: the request span (`sluice.request`) with the GenAI
  convention's attributes and Sluice's own, and `sluice.events.record`;
- inference: one CLIENT span per upstream attempt (`chat <model>`), and
  `traceparent` to the upstream when `propagate_upstream` is on.

No prompt or completion text goes into a span: attributes are ids, names,
counts and outcomes (the `ATTRIBUTES` below are the only keys set).

Source of the names: OpenTelemetry semantic conventions 1.37, "Semantic
conventions for generative AI spans" (gen_ai.*) and "RPC spans" (rpc.*).
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sluice.telemetry import metrics

log = logging.getLogger(__name__)
T = TypeVar("T")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

# GenAI semantic conventions (gen_ai.*), and Sluice's own (sluice.*).
GEN_AI_SYSTEM = "gen_ai.system"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
SERVER_ADDRESS = "server.address"
ERROR_TYPE = "error.type"
TENANT = "sluice.tenant"
REQUEST_ID = "sluice.request_id"
DEPLOYMENT = "sluice.deployment"
ROUTE = "sluice.route"
CACHE_RESULT = "sluice.cache.result"
SAFETY_ACTION = "sluice.safety.action"
OUTCOME = "sluice.outcome"
ATTEMPT_OUTCOME = "sluice.attempt.outcome"
HEDGE = "sluice.attempt.hedge"
MODE = "sluice.mode"

# W3C Trace Context: version 00's four fields (a later version may add
# more after a dash); tracestate: up to 32 comma-separated key=value members
# (keys: lower-case letters, digits, _-*/ and one @; values: printable ASCII
# but comma and equals, no trailing space).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}(?:-[ -~]{0,200})?\Z")
_MEMBER = r"[a-z0-9][_0-9a-z\-*/]{0,240}(?:@[a-z][_0-9a-z\-*/]{0,13})?=(?:[ !-+\--<>-~]{0,255}[!-+\--<>-~])"
_TRACESTATE = re.compile(rf"[ \t]*{_MEMBER}(?:[ \t]*,[ \t]*{_MEMBER}){{0,31}}[ \t]*\Z")
_MAX_TRACESTATE = 512

ENABLED = False
PROPAGATE_UPSTREAM = False
_propagator = TraceContextTextMapPropagator()
_provider: Any = None
_tracer: trace.Tracer = trace.NoOpTracer()


def configure(settings: Any, service: str, region: str, mode: str, version: str = "") -> None:
    """Installs the process's tracer provider from `settings`
    (config.settings.TracingSettings). `service` becomes the resource's
    service.name (`sluice-<service>`: one per mesh process, `sluice-all` for
    the all mode's single process). Idempotent per process: a second call
    replaces the first (tests start several processes' worth in one)."""
    global ENABLED, PROPAGATE_UPSTREAM, _provider, _tracer
    shutdown()
    if not settings.enabled:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create({"service.name": f"sluice-{service}", "service.namespace": "sluice",
                                "service.version": version, "deployment.environment.name": region,
                                "cloud.region": region, MODE: mode})
    provider = TracerProvider(resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.sampling_ratio)))
    provider.add_span_processor(BatchSpanProcessor(_exporter(settings), max_queue_size=settings.max_queue_size,
                                                   schedule_delay_millis=1000))
    _provider = provider
    _tracer = provider.get_tracer("sluice", version)
    ENABLED, PROPAGATE_UPSTREAM = True, settings.propagate_upstream
    log.info("tracing: %s to %s, sampling %.4g of new traces", settings.exporter,
             settings.endpoint or "the OTLP default", settings.sampling_ratio)


def _exporter(settings: Any) -> Any:
    headers = dict(settings.headers) or None
    if settings.exporter == "otlp_http":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter as HttpExporter,
        )

        return HttpExporter(endpoint=settings.endpoint or None, headers=headers)
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    endpoint = settings.endpoint or None
    insecure = not (endpoint or "").startswith("https://")
    return GrpcExporter(endpoint=endpoint, headers=headers, insecure=insecure)


def shutdown() -> None:
    """Flushes queued spans (a few seconds at most) and turns tracing off."""
    global ENABLED, PROPAGATE_UPSTREAM, _provider, _tracer
    provider, _provider = _provider, None
    ENABLED, PROPAGATE_UPSTREAM, _tracer = False, False, trace.NoOpTracer()
    if provider is not None:
        provider.force_flush(5000)
        provider.shutdown()


def tracer() -> trace.Tracer:
    return _tracer


def extract(carrier: Mapping[str, str] | Iterable[tuple[str, Any]] | None) -> otel_context.Context | None:
    """The remote parent in a caller's `traceparent`/`tracestate` (HTTP
    headers, or gRPC metadata as (key, value) pairs: the first of each, as
    on HTTP), or None. Headers that are not well formed (W3C Trace Context,
    sections 3.2 and 3.3) are ignored and counted, before the SDK, which
    would log each one with the caller's text."""
    if not ENABLED or not carrier:
        return None
    if isinstance(carrier, Mapping):
        parent, state = carrier.get(TRACEPARENT), carrier.get(TRACESTATE)
    else:
        parent = state = None
        for key, value in carrier:
            if key == TRACEPARENT and parent is None:
                parent = value
            elif key == TRACESTATE and state is None:
                state = value
    if parent is None:
        return None
    if not isinstance(parent, str) or not _TRACEPARENT.match(parent) or parent.startswith("ff"):
        metrics.TRACE_CONTEXT_REJECTED.labels(TRACEPARENT).inc()
        return None
    values = {TRACEPARENT: parent}
    if state is not None:
        if isinstance(state, str) and len(state) <= _MAX_TRACESTATE and _TRACESTATE.match(state):
            values[TRACESTATE] = state
        else:
            metrics.TRACE_CONTEXT_REJECTED.labels(TRACESTATE).inc()
    return _propagator.extract(values)


def inject(span_context_of: Span | None = None) -> tuple[tuple[str, str], ...]:
    """(key, value) pairs carrying the current span (or `span_context_of`)
    to the next hop; () when off or there is nothing to carry."""
    if not ENABLED:
        return ()
    carrier: dict[str, str] = {}
    ctx = trace.set_span_in_context(span_context_of) if span_context_of is not None else None
    _propagator.inject(carrier, context=ctx)
    return tuple(carrier.items())


def start(name: str, kind: SpanKind = SpanKind.INTERNAL, parent: otel_context.Context | None = None,
          attributes: Mapping[str, Any] | None = None) -> Span:
    """A started span (a non-recording one when off or not sampled): the
    caller ends it. Entry points use it: the sampler decides here."""
    return _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def child(name: str, kind: SpanKind = SpanKind.INTERNAL, parent: otel_context.Context | None = None,
          attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A span under `parent` (default: the current span), or None when that
    trace is not sampled: nothing would be recorded, so nothing is made (a
    span costs microseconds, and a request makes a dozen); the parent's
    context still carries the trace id on."""
    context = trace.get_current_span(parent).get_span_context()
    if context.is_valid and not context.trace_flags.sampled:
        return None
    return _tracer.start_span(name, context=parent, kind=kind, attributes=attributes)


def attach(span: Span) -> object:
    """Makes `span` current; returns the token for `detach`. Streams attach
    around each step, never across a yield (a generator's context is its
    consumer's between steps): see `stepping`."""
    return otel_context.attach(trace.set_span_in_context(span))


def attach_context(context: otel_context.Context) -> object:
    """Makes `context` (a remote parent, or a span's) current; see `attach`."""
    return otel_context.attach(context)


def detach(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]  # the token attach() returned, typed opaquely here


def stepping(stream: AsyncGenerator[T, None], context: otel_context.Context | None) -> AsyncGenerator[T, None]:
    """The items of `stream` with `context` (see `in_context`) current while
    the stream produces each one, and not while the consumer handles it
    (between steps a generator runs in its consumer's context, so a span
    attached across a yield would leak into the consumer and could not be
    detached). `stream` itself when `context` is None (no layer per item
    when tracing is off). The caller closes `stream`."""
    return stream if context is None else _stepping(stream, context)


async def _stepping(stream: AsyncIterator[T], context: otel_context.Context) -> AsyncGenerator[T, None]:
    while True:
        token = otel_context.attach(context)
        try:
            item = await anext(stream)
        except StopAsyncIteration:
            return
        finally:
            detach(token)
        yield item


def in_context(span: Span | None) -> otel_context.Context | None:
    """A context holding `span` (None for None)."""
    return trace.set_span_in_context(span) if span is not None else None


def trace_id(span: Span | None = None) -> str:
    """The trace id of `span` (default: the current span) as 32 hex
    digits, "" when there is none."""
    ctx = (span if span is not None else trace.get_current_span()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def fail(span: Span, error_type: str, message: str = "") -> None:
    """Marks `span` failed with a stable error type (a Sluice reason)."""
    if span.is_recording():
        span.set_attribute(ERROR_TYPE, error_type)
        span.set_status(Status(StatusCode.ERROR, message[:200]))
