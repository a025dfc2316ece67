"""gRPC face of the inference service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.inference.core import AttemptReport, Generator, UpstreamTiming
from sluice.inference.v1 import inference_service_pb2 as pb
from sluice.llm.v1 import wire_pb2


class InferenceServicer:
    def __init__(self, generator: Generator) -> None:
        self._generator = generator

    async def Generate(self, request: pb.GenerateRequest, context: object) -> AsyncIterator[pb.GenerateResponse]:
        """The answer's events and the attempts' reports (core.Generator.generate).
        A buffered request's events go out in batches (WireEvents: every
        event up to the next report or the end), since its caller waits for
        the whole answer anyway: one message per hop instead of one per event."""
        held: list[wire_pb2.WireEvent] | None = [] if request.buffered else None
        try:
            async for item in self._generator.generate(request.request, list(request.candidates),
                                                       request.allowed_geos, request.priority,
                                                       request.continue_midstream, request.buffered):
                if isinstance(item, (AttemptReport, UpstreamTiming)):
                    if held:
                        yield pb.GenerateResponse(events=wire_pb2.WireEvents(events=held))
                        held = []
                    yield _report(item)
                elif held is not None:
                    held.append(wire_pb2.WireEvent(type=item.type, data=item.data))
                else:
                    yield pb.GenerateResponse(event=wire_pb2.WireEvent(type=item.type, data=item.data))
            if held:
                yield pb.GenerateResponse(events=wire_pb2.WireEvents(events=held))
        except Exception:
            if held:
                # What came before a failure still counts (its usage is billed).
                yield pb.GenerateResponse(events=wire_pb2.WireEvents(events=held))
            raise

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


def _report(item: AttemptReport | UpstreamTiming) -> pb.GenerateResponse:
    if isinstance(item, UpstreamTiming):
        return pb.GenerateResponse(timing=pb.Timing(upstream_ms=item.upstream_ms))
    return pb.GenerateResponse(attempt=pb.Attempt(
        candidate=item.candidate, deployment=item.deployment, model_id=item.model_id, outcome=item.outcome,
        reason=item.reason, hedge=item.hedge, usage=item.usage, time_to_first_event_ms=item.ttft_ms))
