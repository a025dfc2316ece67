"""gRPC face of the inference service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.inference.core import AttemptReport, Generator, UpstreamTiming
from sluice.inference.v1 import inference_service_pb2 as pb
from sluice.llm.v1 import wire_pb2
from sluice.rpc.batching import carrying, ready_batches
from sluice.rpc.registry import LocalContext
from sluice.wire.events import Event

# What the generator yields.
_Item = Event | AttemptReport | UpstreamTiming


class InferenceServicer:
    def __init__(self, generator: Generator) -> None:
        self._generator = generator

    async def Generate(self, request: pb.GenerateRequest, context: object) -> AsyncIterator[pb.GenerateResponse]:
        """The answer's events and the attempts' reports (core.Generator.generate).
        A buffered request's events go out in batches (WireEvents: every
        event up to the next report or the end), since its caller waits for
        the whole answer anyway: one message per hop instead of one per event;
        a stream's, as many as are ready together."""
        items = self._generator.generate(request.request, list(request.candidates), request.allowed_geos,
                                         request.priority, request.continue_midstream, request.buffered)
        if request.buffered:
            async for response in _buffered(items):
                yield response
            return
        # Over the network, a stream's events that are ready together cross as one message
        # (ready_batches); in process (the caller's LocalStub) a message costs little.
        batches = ready_batches(items) if not isinstance(context, LocalContext) else _one_by_one(items)
        async for batch in batches:
            for response in _messages(batch):
                yield response

    async def CountTokens(self, request: pb.CountTokensRequest, context: object) -> pb.CountTokensResponse:
        tokens, body, model_id = await self._generator.count_tokens(request.request, list(request.candidates),
                                                                    request.allowed_geos)
        return pb.CountTokensResponse(input_tokens=tokens, body=body, model_id=model_id)

    async def DeploymentHealth(self, request: pb.DeploymentHealthRequest, context: object
                               ) -> pb.DeploymentHealthResponse:
        return pb.DeploymentHealthResponse(deployments=[
            pb.DeploymentState(deployment=dep, breaker=state, retry_in_s=retry_in, limit=limit, in_flight=in_flight,
                               ttft_p95_s=p95)
            for dep, state, retry_in, limit, in_flight, p95 in self._generator.states()])


async def _buffered(items: AsyncIterator[_Item]) -> AsyncIterator[pb.GenerateResponse]:
    """A buffered answer: every event up to the next report, or the end, as one message."""
    pending: list[_Item] = []
    try:
        async for item in items:
            pending.append(item)
            if isinstance(item, (AttemptReport, UpstreamTiming)):
                for response in _messages(pending):
                    yield response
                pending = []
    except Exception:
        # What came before a failure still counts (its usage is billed).
        for response in _messages(pending):
            yield response
        raise
    for response in _messages(pending):
        yield response


def _messages(items: list[_Item]) -> list[pb.GenerateResponse]:
    """`items` as responses, in order: each run of events as one message (`event` for one,
    `events` for more), each report as its own."""
    out: list[pb.GenerateResponse] = []
    held: list[wire_pb2.WireEvent] = []
    for item in items:
        if isinstance(item, (AttemptReport, UpstreamTiming)):
            if held:
                out.append(carrying(pb.GenerateResponse, held))
                held = []
            out.append(_report(item))
        else:
            held.append(wire_pb2.WireEvent(type=item.type, data=item.data))
    if held:
        out.append(carrying(pb.GenerateResponse, held))
    return out


async def _one_by_one(items: AsyncIterator[_Item]) -> AsyncIterator[list[_Item]]:
    async for item in items:
        yield [item]


def _report(item: AttemptReport | UpstreamTiming) -> pb.GenerateResponse:
    if isinstance(item, UpstreamTiming):
        return pb.GenerateResponse(timing=pb.Timing(upstream_ms=item.upstream_ms))
    return pb.GenerateResponse(attempt=pb.Attempt(
        candidate=item.candidate, deployment=item.deployment, model_id=item.model_id, outcome=item.outcome,
        reason=item.reason, hedge=item.hedge, usage=item.usage, time_to_first_event_ms=item.ttft_ms))
