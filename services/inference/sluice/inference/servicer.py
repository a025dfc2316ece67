"""gRPC face of the inference service."""

from __future__ import annotations

from collections.abc import AsyncIterator

from sluice.inference.core import Generator
from sluice.inference.v1 import inference_service_pb2 as pb


class InferenceServicer:
    def __init__(self, generator: Generator) -> None:
        self._generator = generator

    async def Generate(self, request: pb.GenerateRequest, context: object) -> AsyncIterator[pb.GenerateResponse]:
        async for event in self._generator.generate(request.params, list(request.candidates)):
            yield pb.GenerateResponse(event=event)
