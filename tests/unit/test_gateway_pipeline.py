"""The gateway pipeline alone, with in-process fakes for every stage it calls: what it answers,
in which order it asks, and the one billing and audit record each request leaves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sluice.auth.v1 import auth_service_pb2, principal_pb2
from sluice.events.v1 import events_pb2
from sluice.gateway.accounting import EventRecorder
from sluice.gateway.pipeline import Pipeline, RequestInfo, Stages
from sluice.inference.v1 import inference_service_pb2 as inference_pb
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1 import candidate_pb2, decision_pb2, model_pb2, routing_service_pb2
from sluice.rpc.errors import Reason, SluiceError
from sluice.safety.v1 import safety_service_pb2, verdict_pb2
from sluice.wire import events as ev
from sluice.wire.request import MessagesRequest

MODEL = "claude-sonnet-4-6"
PRINCIPAL = principal_pb2.Principal(tenant_id="acme", key_id="k1", tier="standard", region="local")
BODY = b'{"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}'


def answer() -> list[ev.Event]:
    return [ev.Event.of({"type": "message_start", "message": {
                "id": "msg_1", "type": "message", "role": "assistant", "model": MODEL, "content": [],
                "usage": {"input_tokens": 9, "output_tokens": 1}}}),
            ev.Event.of({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            ev.text_delta(0, "Hello"), ev.text_delta(0, " there"), ev.content_block_stop(0),
            ev.message_delta("end_turn", {"output_tokens": 2}), ev.message_stop()]


class Emitter:
    """The event emitter's port: what was emitted, by kind."""

    region, accepting = "local", True

    def __init__(self) -> None:
        self.emitted: list[tuple[str, Any]] = []

    def emit(self, kind: str, region: str, tenant: str, event: Any) -> None:
        self.emitted.append((kind, event))

    def of(self, kind: str) -> list[Any]:
        return [event for k, event in self.emitted if k == kind]


class Calls:
    """Every stage call in order, and a way to make any of them fail or wait."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.fail: dict[str, SluiceError] = {}
        self.gate: dict[str, asyncio.Event] = {}

    async def enter(self, name: str) -> None:
        self.order.append(name)
        if name in self.gate:
            await self.gate[name].wait()
        if name in self.fail:
            raise self.fail[name]


class Auth:
    def __init__(self, calls: Calls) -> None:
        self.calls, self.settled = calls, []

    async def Authenticate(self, request, timeout=None):
        await self.calls.enter("Authenticate")
        return auth_service_pb2.AuthenticateResponse(principal=PRINCIPAL)

    async def Admit(self, request, timeout=None):
        await self.calls.enter("Admit")
        return auth_service_pb2.AdmitResponse(reservation=auth_service_pb2.Reservation(lease_id="l1", tokens=73),
                                              rate_limit_headers={"anthropic-ratelimit-requests-limit": "50"})

    async def Settle(self, request, timeout=None):
        self.settled.append(request)
        return auth_service_pb2.SettleResponse()


class Routing:
    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    async def Route(self, request, timeout=None):
        await self.calls.enter("Route")
        return routing_service_pb2.RouteResponse(
            candidates=[candidate_pb2.Candidate(model_id=MODEL, deployment="anthropic-us", provider="anthropic",
                                                context_window=200_000)],
            model=model_pb2.ModelInfo(id=MODEL), decision=decision_pb2.RouteDecision(requested=MODEL, reason="requested"))


class Safety:
    def __init__(self, calls: Calls, action: int = verdict_pb2.ACTION_ALLOW) -> None:
        self.calls, self.action = calls, action

    async def CheckInput(self, request, timeout=None):
        await self.calls.enter("CheckInput")
        hits = [verdict_pb2.RuleHit(rule_id="injection.model", action=self.action)] \
            if self.action != verdict_pb2.ACTION_ALLOW else []
        return safety_service_pb2.CheckInputResponse(verdict=verdict_pb2.Verdict(
            action=self.action, hits=hits, policy_version="test@1", profile="default"))


class Stream:
    """A server-streaming call: iterates the responses; cancel() is recorded."""

    def __init__(self, responses: list[Any]) -> None:
        self._responses, self.cancelled = responses, False

    def __aiter__(self):
        return self._run()

    async def _run(self):
        for response in self._responses:
            await asyncio.sleep(0)
            yield response

    def cancel(self) -> bool:
        self.cancelled = True
        return True


class Inference:
    def __init__(self, calls: Calls) -> None:
        self.calls, self.streams = calls, []

    def Generate(self, request, timeout=None):
        self.calls.order.append("Generate")
        responses = [inference_pb.GenerateResponse(attempt=inference_pb.Attempt(
            candidate=0, deployment="anthropic-us", model_id=MODEL, outcome="served", time_to_first_event_ms=5))]
        wire = [wire_pb2.WireEvent(type=e.type, data=e.data) for e in answer()]
        if request.buffered:  # as inference sends a buffered answer: one batch
            responses.append(inference_pb.GenerateResponse(events=wire_pb2.WireEvents(events=wire)))
        else:
            responses += [inference_pb.GenerateResponse(event=event) for event in wire]
        responses.append(inference_pb.GenerateResponse(timing=inference_pb.Timing(upstream_ms=12.5)))
        self.streams.append(Stream(responses))
        return self.streams[-1]


def pipeline(calls: Calls, emitter: Emitter, in_process: bool, safety: Safety | None = None) -> Pipeline:
    stages = Stages(auth=Auth(calls), safety=safety or Safety(calls), cache=None, routing=Routing(calls),
                    inference=Inference(calls), checks_in_process=in_process)
    return Pipeline(stages, 5.0, EventRecorder(emitter))


async def serve(p: Pipeline, body: bytes = BODY) -> tuple[list[ev.Event], RequestInfo]:
    principal = await p.authenticate("sk-sluice-x", "messages")
    info = RequestInfo()
    request = p.parse(principal, body, "2023-06-01", (), options={}, info=info)
    return [e async for e in p.stream(principal, request, info)], info


@pytest.mark.parametrize("in_process", [True, False])
async def test_a_served_request_answers_as_the_upstream_did_and_leaves_one_billing_and_one_audit_record(in_process):
    calls, emitter = Calls(), Emitter()
    p = pipeline(calls, emitter, in_process)
    events, info = await serve(p)
    assert [e.type for e in events] == [e.type for e in answer()]
    assert info.headers["x-sluice-deployment"] == "anthropic-us"
    assert info.headers["anthropic-ratelimit-requests-limit"] == "50"
    (billing,), (audit,) = emitter.of("billing"), emitter.of("audit")
    summary = billing.request
    assert summary.outcome == events_pb2.OUTCOME_OK and audit.request.request_id == summary.request_id
    assert (summary.model_served, summary.input_tokens, summary.output_tokens) == (MODEL, 9, 2)
    assert summary.deployment == "anthropic-us" and summary.upstream_ms == 12.5
    assert summary.total_ms >= 0 and audit.completion.chars == len("Hello there")
    await p.drain()
    assert [s.usage.output_tokens for s in p._s.auth.settled] == [2]


async def test_in_process_the_checks_run_in_turn_and_a_route_refusal_comes_before_admission():
    calls, emitter = Calls(), Emitter()
    await serve(pipeline(calls, emitter, in_process=True))
    assert calls.order == ["Authenticate", "Route", "Admit", "CheckInput", "Generate"]
    calls, emitter = Calls(), Emitter()
    calls.fail["Route"] = SluiceError(Reason.MODEL_NOT_FOUND, f"model: {MODEL}")
    with pytest.raises(SluiceError) as refused:
        await serve(pipeline(calls, emitter, in_process=True))
    assert refused.value.reason is Reason.MODEL_NOT_FOUND and "Admit" not in calls.order
    (billing,) = emitter.of("billing")
    assert billing.request.outcome == events_pb2.OUTCOME_ERROR and billing.request.error_reason == "MODEL_NOT_FOUND"


async def test_over_the_network_routing_and_admission_run_at_once():
    calls, emitter = Calls(), Emitter()
    calls.gate["Route"] = asyncio.Event()
    p = pipeline(calls, emitter, in_process=False)
    task = asyncio.ensure_future(serve(p))
    while "Admit" not in calls.order:  # admission starts while routing still waits
        await asyncio.sleep(0)
    assert "Generate" not in calls.order
    calls.gate["Route"].set()
    events, _ = await task
    assert events and calls.order.index("Generate") > calls.order.index("CheckInput")


async def test_a_blocked_prompt_never_reaches_the_model_and_is_recorded_with_its_verdict():
    calls, emitter = Calls(), Emitter()
    p = pipeline(calls, emitter, in_process=True, safety=Safety(calls, verdict_pb2.ACTION_BLOCK))
    with pytest.raises(SluiceError) as blocked:
        await serve(p)
    assert blocked.value.reason is Reason.POLICY_BLOCKED and "injection.model" in blocked.value.message
    assert "Generate" not in calls.order
    (audit,) = emitter.of("audit")
    assert audit.request.outcome == events_pb2.OUTCOME_ERROR
    assert [h.rule_id for h in audit.safety_verdict.hits] == ["injection.model"]


async def test_a_client_gone_mid_stream_cancels_the_upstream_and_is_recorded_as_cancelled():
    calls, emitter = Calls(), Emitter()
    p = pipeline(calls, emitter, in_process=True)
    principal = await p.authenticate("sk-sluice-x", "messages")
    request = MessagesRequest(BODY, "2023-06-01")
    stream = p.stream(principal, request, RequestInfo())
    first = await anext(stream)
    assert first.type == "message_start"
    await stream.aclose()
    assert p._s.inference.streams[-1].cancelled
    (billing,) = emitter.of("billing")
    assert billing.request.outcome == events_pb2.OUTCOME_CANCELLED


async def test_a_tenant_of_another_region_is_refused_and_nothing_is_kept_here():
    calls, emitter = Calls(), Emitter()
    p = pipeline(calls, emitter, in_process=True)
    elsewhere = principal_pb2.Principal(tenant_id="globex", key_id="k2", tier="standard", region="eu-west-1")
    with pytest.raises(SluiceError) as refused:
        async for _ in p.stream(elsewhere, MessagesRequest(BODY, "2023-06-01")):
            pass
    assert refused.value.reason is Reason.WRONG_REGION and emitter.emitted == []


async def test_a_buffered_answer_arrives_as_one_batch_and_is_assembled_whole():
    calls, emitter = Calls(), Emitter()
    p = pipeline(calls, emitter, in_process=True)
    principal = await p.authenticate("sk-sluice-x", "messages")
    assembled = await p.create(principal, MessagesRequest(BODY, "2023-06-01"), RequestInfo())
    assert b"Hello there" in assembled.json() and b'"stop_reason":"end_turn"' in assembled.json().replace(b" ", b"")
    (billing,) = emitter.of("billing")
    assert billing.request.output_tokens == 2 and billing.request.upstream_ms == 12.5
