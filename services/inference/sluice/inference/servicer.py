"""gRPC face of the inference service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.inference.core import Generator
from sluice.inference.v1 import inference_service_pb2 as pb
from sluice.llm.v1 import wire_pb2


class InferenceServicer:
    def __init__(self, generator: Generator) -> None:
        self._generator = generator

    async def Generate(self, request: pb.GenerateRequest, context: object) -> AsyncIterator[pb.GenerateResponse]:
        async for event in self._generator.generate(request.request, list(request.candidates)):
            yield pb.GenerateResponse(event=wire_pb2.WireEvent(type=event.type, data=event.data))

    async def CountTokens(self, request: pb.CountTokensRequest, context: object) -> pb.CountTokensResponse:
        tokens, body, model_id = await self._generator.count_tokens(request.request, list(request.candidates))
        return pb.CountTokensResponse(input_tokens=tokens, body=body, model_id=model_id)
