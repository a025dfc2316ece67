"""gRPC face of the gateway: Sluice's public API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sluice.gateway.pipeline import Pipeline
from sluice.gateway.v1 import gateway_service_pb2 as pb
from sluice.rpc import context as call_context
from sluice.rpc import headers


def api_key_from_metadata(metadata: Any) -> str:
    bearer = ""
    for key, value in metadata or ():
        if key == headers.API_KEY:
            return value
        if key == headers.AUTHORIZATION and value.lower().startswith("bearer "):
            bearer = value[7:].strip()
    return bearer


class GatewayServicer:
    def __init__(self, pipeline: Pipeline, default_timeout_s: float) -> None:
        self._pipeline = pipeline
        self._default_timeout = default_timeout_s

    def _begin(self, context: Any) -> str:
        ctx = call_context.current()
        if ctx is not None and ctx.deadline is None:
            # The client set no deadline: the gateway's default bounds the request.
            call_context.begin(ctx.request_id, self._default_timeout)
        return api_key_from_metadata(context.invocation_metadata())

    async def CreateMessage(self, request: pb.CreateMessageRequest, context: Any) -> pb.CreateMessageResponse:
        principal = await self._pipeline.authenticate(self._begin(context))
        return pb.CreateMessageResponse(message=await self._pipeline.create(principal, request.params))

    async def StreamMessage(self, request: pb.StreamMessageRequest, context: Any) -> AsyncIterator[pb.StreamMessageResponse]:
        principal = await self._pipeline.authenticate(self._begin(context))
        async for event in self._pipeline.stream(principal, request.params):
            yield pb.StreamMessageResponse(event=event)
