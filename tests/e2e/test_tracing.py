"""Traces across every hop, read back from a real Jaeger v2 (built from the Go module proxy).

A mesh exports over OTLP/gRPC, an `all` process over OTLP/HTTP. Each request carries a client's
W3C traceparent (HTTP header or gRPC metadata); the answer names the trace in x-sluice-trace-id,
the audit record keeps it, and Jaeger's query API shows one trace with spans from every service,
each linked to its parent, and no prompt or completion text anywhere.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator

import grpc
import httpx
import pytest

from sluice.gateway.v1 import gateway_service_pb2 as pb
from sluice.services import REQUEST_PATH
from tests.e2e.helpers import gateway_stub, grpc_params, record_of, sdk, user
from tests.infra.jaeger import JaegerProcess, Span, services_of, spans_of
from tests.infra.sluice_cluster import SluiceCluster

pytestmark = pytest.mark.e2e

MESH_SERVICES = {f"sluice-{name}" for name in REQUEST_PATH}  # service.name of each mesh process


@pytest.fixture(scope="module")
def jaeger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JaegerProcess]:
    with JaegerProcess(tmp_path_factory.mktemp("jaeger")) as running:
        yield running


def _traced(mode: str, jaeger: JaegerProcess, redis_url: str, workdir, **tracing) -> SluiceCluster:
    exporter = {"exporter": "otlp_grpc", "endpoint": jaeger.otlp_grpc_endpoint} if mode == "mesh" else \
        {"exporter": "otlp_http", "endpoint": jaeger.otlp_http_traces_url}
    return SluiceCluster(mode, redis_url, workdir, name=f"traced-{mode}", overrides={
        "telemetry": {"tracing": {"enabled": True, "sampling_ratio": 1.0, **exporter, **tracing}}}).start()


@pytest.fixture(scope="module", params=["mesh", "all"])
def traced(request, jaeger, redis_url, tmp_path_factory) -> Iterator[SluiceCluster]:
    # The mesh also sends traceparent to the upstream; `all` keeps it (the default).
    cluster = _traced(request.param, jaeger, redis_url, tmp_path_factory.mktemp(f"traced-{request.param}"),
                      propagate_upstream=request.param == "mesh")
    try:
        yield cluster
    finally:
        cluster.stop()


def _client_context() -> tuple[str, str, str]:
    """(trace id, span id, traceparent) of a sampled client span."""
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01"


def _complete(jaeger: JaegerProcess, trace_id: str, services: set[str], operations: set[str]) -> list[Span]:
    """The trace once it holds spans of every service in `services` and every operation name
    in `operations` (spans arrive in batches, each process on its own schedule)."""
    def whole(trace: dict) -> bool:
        spans = spans_of(trace)
        names = {s.operation for s in spans}
        return services <= services_of(trace) and all(any(n.startswith(o) for n in names) for o in operations)

    return spans_of(jaeger.wait_for_trace(trace_id, whole, timeout=30))


def _one(spans: list[Span], operation: str, service: str | None = None) -> Span:
    found = [s for s in spans if s.operation == operation and (service is None or s.service == service)]
    assert len(found) == 1, (operation, [(s.service, s.operation) for s in spans])
    return found[0]


def _assert_linked(spans: list[Span], client_span_id: str) -> None:
    """One tree: the HTTP or gRPC server span is the child of the client's span, every other
    span the child of a span of the same trace."""
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_span_id not in ids]
    assert [(r.parent_span_id, r.attributes.get("span.kind")) for r in roots] == [(client_span_id, "server")], \
        [(s.service, s.operation, s.parent_span_id) for s in roots]


def test_a_request_is_one_trace_across_every_service(traced, jaeger):
    trace_id, span_id, traceparent = _client_context()
    marker = f"zebra-{secrets.token_hex(6)}"  # prompt text that must appear in no span
    client = sdk(traced.http_base, traced.api_key)
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-6", max_tokens=64, messages=user(f"say something about {marker}"),
        extra_headers={"traceparent": traceparent, "x-sluice-cache": "read-write"})
    message = raw.parse()
    assert raw.headers["x-sluice-trace-id"] == trace_id  # the client's trace goes on

    services = MESH_SERVICES if traced.mode == "mesh" else {"sluice-all"}
    stages = {"POST /v1/messages", "sluice.request", "sluice.auth.v1.AuthService/Authenticate",
              "sluice.auth.v1.AuthService/Admit", "sluice.safety.v1.SafetyService/CheckInput",
              "sluice.cache.v1.CacheService/Lookup", "sluice.routing.v1.RoutingService/Route",
              "sluice.inference.v1.InferenceService/Generate", "chat ", "sluice.events.record"}
    spans = _complete(jaeger, trace_id, services, stages)
    _assert_linked(spans, span_id)

    server = _one(spans, "POST /v1/messages")
    request = _one(spans, "sluice.request")
    generate = _one(spans, "sluice.inference.v1.InferenceService/Generate")
    attempt = _one(spans, f"chat {message.model}")
    by_id = {s.span_id: s for s in spans}
    assert request.parent_span_id == server.span_id
    assert generate.parent_span_id == request.span_id
    assert attempt.parent_span_id == generate.span_id and attempt.attributes["span.kind"] == "client"
    for stage in ("Authenticate", "Admit", "CheckInput", "Lookup", "Route"):
        span = next(s for s in spans if s.operation.endswith(f"/{stage}"))
        assert by_id[span.parent_span_id].operation in ("POST /v1/messages", "sluice.request"), stage
        assert span.attributes["rpc.system"] == "grpc"
    if traced.mode == "mesh":  # each stage in its own service
        assert {server.service, request.service, generate.service, attempt.service} == \
            {"sluice-gateway", "sluice-inference"}
        assert _one(spans, "sluice.safety.v1.SafetyService/CheckInput").service == "sluice-safety"

    # The GenAI conventions' attributes and Sluice's own.
    a = request.attributes
    assert a["gen_ai.system"] == "anthropic" and a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.request.model"] == "claude-sonnet-4-6" and a["gen_ai.response.model"] == message.model
    assert a["gen_ai.usage.input_tokens"] == message.usage.input_tokens
    assert a["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert json.loads(a["gen_ai.response.finish_reasons"]) == [message.stop_reason]
    assert a["sluice.tenant"] == "acme" and a["sluice.cache.result"] == "miss"
    assert a["sluice.safety.action"] == "allow" and a["sluice.deployment"] == raw.headers["x-sluice-deployment"]
    assert a["sluice.request_id"] == raw.headers["request-id"]
    assert a["sluice.route"] == raw.headers["x-sluice-route"]
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens

    # No prompt or completion text in any span or resource attribute.
    completion = message.content[0].text
    for span in spans:
        dumped = json.dumps([span.operation, span.attributes, span.process_tags])
        assert marker not in dumped and completion not in dumped, span.operation

    # The audit record names the trace.
    assert record_of(traced, raw.headers["request-id"]).request.trace_id == trace_id

    # The upstream saw the attempt's span as its parent only where propagate_upstream is on.
    sent = httpx.get(f"{traced.simulator_base}/_sim/requests", params={"last": 1}, timeout=5).json()[-1]["headers"]
    if traced.mode == "mesh":
        assert sent["traceparent"] == f"00-{trace_id}-{attempt.span_id}-01"
    else:
        assert "traceparent" not in sent


def test_a_grpc_client_traceparent_continues_across_the_mesh(traced, jaeger):
    trace_id, span_id, traceparent = _client_context()
    with grpc.insecure_channel(traced.grpc_address) as channel:
        stream = gateway_stub(channel).StreamMessage(pb.StreamMessageRequest(params=grpc_params("hello over grpc")), timeout=30,
                      metadata=(("x-api-key", traced.api_key), ("traceparent", traceparent)))
        events = list(stream)
        initial = dict(stream.initial_metadata())
    assert events and initial["x-sluice-trace-id"] == trace_id
    services = {"sluice-gateway", "sluice-inference"} if traced.mode == "mesh" else {"sluice-all"}
    spans = _complete(jaeger, trace_id, services, {"sluice.gateway.v1.GatewayService/StreamMessage", "chat "})
    _assert_linked(spans, span_id)
    assert _one(spans, "sluice.request").parent_span_id == \
        _one(spans, "sluice.gateway.v1.GatewayService/StreamMessage").span_id


def test_a_refused_request_is_traced_and_answered_with_its_trace_id(traced, jaeger):
    trace_id, span_id, traceparent = _client_context()
    raw = sdk(traced.http_base, "sk-sluice-not-a-key").messages.with_raw_response
    with pytest.raises(Exception) as refused:
        raw.create(model="claude-sonnet-4-6", max_tokens=8, messages=user("hi"),
                   extra_headers={"traceparent": traceparent})
    assert refused.value.response.status_code == 401
    assert refused.value.response.headers["x-sluice-trace-id"] == trace_id
    spans = _complete(jaeger, trace_id, set(), {"POST /v1/messages", "sluice.auth.v1.AuthService/Authenticate"})
    _assert_linked(spans, span_id)
    assert _one(spans, "POST /v1/messages").attributes["http.response.status_code"] == 401


def test_sampling_keeps_the_ratio_of_new_traces_and_every_sampled_parent(jaeger, redis_url, tmp_path):
    # Ratio 0: traces Sluice starts are never kept; a client's sampled trace always is.
    cluster = _traced("all", jaeger, redis_url, tmp_path, sampling_ratio=0.0)
    try:
        client = sdk(cluster.http_base, cluster.api_key)
        unsampled = client.messages.with_raw_response.create(model="claude-sonnet-4-6", max_tokens=8,
                                                             messages=user("not kept"))
        dropped = unsampled.headers["x-sluice-trace-id"]
        assert len(dropped) == 32  # a trace id still, for the logs and the audit record
        trace_id, _span_id, traceparent = _client_context()
        client.messages.create(model="claude-sonnet-4-6", max_tokens=8, messages=user("kept"),
                               extra_headers={"traceparent": traceparent})
        _complete(jaeger, trace_id, {"sluice-all"}, {"sluice.events.record", "chat "})
        # The process exports in order, so the first request's spans would be there by now.
        assert jaeger.trace(dropped) is None
    finally:
        cluster.stop()
