"""Spans exported with the real OpenTelemetry SDK over OTLP (gRPC and HTTP) reach a real
Jaeger v2 and come back through its query API as one trace across two services."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from tests.infra.go_tools import GoToolError, ensure
from tests.infra.jaeger import JaegerProcess, services_of, spans_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]  # a first run builds Jaeger

PROPAGATOR = TraceContextTextMapPropagator()


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerProcess]:
    try:
        binary = ensure("jaeger")  # waits for (or does) the one build per machine
    except GoToolError as exc:
        pytest.fail(f"cannot build Jaeger v2: {exc}")
    with JaegerProcess(tmp_path_factory.mktemp("jaeger"), binary=binary) as running:
        yield running


def _provider(service: str, exporter: SpanExporter, batch: bool) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service,
                                                        "deployment.environment": "test"}))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=100) if batch
                                else SimpleSpanProcessor(exporter))
    return provider


def _two_service_trace(upstream: TracerProvider, downstream: TracerProvider, run: str
                       ) -> tuple[str, str, str]:
    """A parent span in `upstream` and its child in `downstream`, linked the way two services
    are: the W3C traceparent header injected by one and extracted by the other.
    Returns (trace id, parent span id, child span id) in hex."""
    carrier: dict[str, str] = {}
    with upstream.get_tracer("sluice.test").start_as_current_span(
            "gateway.request", kind=SpanKind.CLIENT,
            attributes={"sluice.run": run, "sluice.tokens": 42, "sluice.cached": False,
                        "sluice.cost_usd": 0.25}) as parent:
        PROPAGATOR.inject(carrier)
        assert carrier["traceparent"].startswith("00-")
        remote = PROPAGATOR.extract(carrier)  # what the downstream service sees
        with downstream.get_tracer("sluice.test").start_as_current_span(
                "auth.check", context=remote, kind=SpanKind.SERVER,
                attributes={"sluice.run": run, "sluice.key_id": "key-123",
                            "sluice.models": ["a", "b"]}) as child:
            pass
    ctx, child_ctx = parent.get_span_context(), child.get_span_context()
    assert child_ctx.trace_id == ctx.trace_id
    for provider in (upstream, downstream):
        assert provider.force_flush(10_000)
    return (format(ctx.trace_id, "032x"), format(ctx.span_id, "016x"),
            format(child_ctx.span_id, "016x"))


def _assert_roundtrip(jaeger: JaegerProcess, exporter_for, batch: bool) -> None:
    run = uuid.uuid4().hex[:8]
    up_name, down_name = f"gateway-{run}", f"auth-{run}"
    upstream = _provider(up_name, exporter_for(), batch)
    downstream = _provider(down_name, exporter_for(), batch)
    try:
        trace_id, parent_id, child_id = _two_service_trace(upstream, downstream, run)
    finally:
        upstream.shutdown()
        downstream.shutdown()

    trace = jaeger.wait_for_trace(trace_id, lambda t: services_of(t) >= {up_name, down_name}
                                  and len(t["spans"]) >= 2, timeout=30)
    spans = {span.span_id: span for span in spans_of(trace)}
    assert set(spans) == {parent_id, child_id}
    parent, child = spans[parent_id], spans[child_id]
    assert {parent.trace_id, child.trace_id} == {trace_id}

    assert (parent.service, parent.operation, parent.parent_span_id) == (
        up_name, "gateway.request", None)
    assert (child.service, child.operation, child.parent_span_id) == (
        down_name, "auth.check", parent_id)

    assert parent.attributes["sluice.run"] == run
    assert parent.attributes["sluice.tokens"] == 42
    assert parent.attributes["sluice.cached"] is False
    assert parent.attributes["sluice.cost_usd"] == pytest.approx(0.25)
    assert parent.attributes["span.kind"] == "client"
    assert child.attributes["sluice.key_id"] == "key-123"
    assert child.attributes["span.kind"] == "server"
    assert child.attributes["sluice.models"] == '["a","b"]'  # arrays arrive as JSON strings
    assert parent.process_tags["deployment.environment"] == "test"

    # The search API finds the same single trace from either service.
    for service in (up_name, down_name):
        found = jaeger.traces(service)
        assert [t["traceID"].zfill(32) for t in found] == [trace_id]
    assert {up_name, down_name} <= set(jaeger.services())


def test_otlp_grpc_roundtrip(jaeger: JaegerProcess) -> None:
    _assert_roundtrip(jaeger, lambda: GrpcSpanExporter(
        endpoint=jaeger.otlp_grpc_endpoint, insecure=True, timeout=10), batch=True)


def test_otlp_http_roundtrip(jaeger: JaegerProcess) -> None:
    _assert_roundtrip(jaeger, lambda: HttpSpanExporter(
        endpoint=jaeger.otlp_http_traces_url, timeout=10), batch=False)


def test_v3_api_serves_the_trace(jaeger: JaegerProcess) -> None:
    run = uuid.uuid4().hex[:8]
    exporter = HttpSpanExporter(endpoint=jaeger.otlp_http_traces_url, timeout=10)
    provider = _provider(f"v3-{run}", exporter, batch=False)
    try:
        with provider.get_tracer("sluice.test").start_as_current_span("v3.op") as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
    finally:
        provider.shutdown()
    jaeger.wait_for_trace(trace_id, timeout=30)
    body = jaeger.trace_v3(trace_id)
    assert body is not None
    resource_spans = body["result"]["resourceSpans"]
    names = [s["name"] for rs in resource_spans for ss in rs["scopeSpans"] for s in ss["spans"]]
    assert names == ["v3.op"]
    assert jaeger.trace("0" * 31 + "1") is None  # an unknown trace is None, not an error


def test_two_jaegers_run_at_once_on_their_own_ports(jaeger: JaegerProcess, tmp_path: Path) -> None:
    with JaegerProcess(tmp_path, binary=jaeger._binary) as second:
        assert second.configured_ports.isdisjoint(jaeger.configured_ports)
        for running in (jaeger, second):
            assert running.listening_ports() == running.configured_ports, running.log_text()[-2000:]
        assert second.services() == []
