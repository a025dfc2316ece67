"""gRPC face of the gateway: Sluice's public API.

Requests arrive as typed `params` or as the API's JSON (`body`) and become
the same `MessagesRequest` an HTTP client's body does, so both paths carry
the same requests and get the same answers. Answers carry the exact JSON
(`body`, `wire`) beside the typed view. The HTTP API's response headers
(request-id, rate limits, deprecation) go out as initial metadata. While a
stream is silent, `ping` events keep it alive, as on HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from sluice import call_context
from sluice.gateway.pipeline import Pipeline, RequestInfo, models_page_json, with_pings
from sluice.gateway.v1 import gateway_service_pb2 as pb
from sluice.llm.v1 import wire_pb2
from sluice.rpc import headers
from sluice.wire.events import MESSAGE_DELTA, MESSAGE_START, merge_usage
from sluice.wire.request import LATEST_VERSION
from sluice.wire.typed import event_proto, message_proto, params_json, usage_proto


def api_key_from_metadata(metadata: Any) -> str:
    bearer = ""
    for key, value in metadata or ():
        if key == headers.API_KEY:
            return value
        if key == headers.AUTHORIZATION and value.lower().startswith("bearer "):
            bearer = value[7:].strip()
    return bearer


def _options(context: Any) -> dict[str, tuple[str, ...]]:
    """The x-sluice-* option metadata values by name (see pipeline.parse_options)."""
    sent = context.invocation_metadata() or ()
    return {name: tuple(value for key, value in sent if key == name) for name in headers.OPTIONS}


class GatewayServicer:
    def __init__(self, pipeline: Pipeline, default_timeout_s: float, ping_interval_s: float = 0.0) -> None:
        self._pipeline = pipeline
        self._default_timeout = default_timeout_s
        self._ping_interval = ping_interval_s

    def _begin(self, context: Any) -> str:
        ctx = call_context.current()
        if ctx is not None and ctx.deadline is None:
            # The client set no deadline: the gateway's default bounds the request.
            call_context.begin(ctx.request_id, self._default_timeout, ctx.started)
        return api_key_from_metadata(context.invocation_metadata())

    async def _request(self, request: Any, context: Any, count_tokens: bool = False,
                       info: RequestInfo | None = None):
        principal = await self._pipeline.authenticate(self._begin(context),
                                                      "count_tokens" if count_tokens else "messages")
        body = request.body or params_json(request.params, count_tokens)
        parsed = self._pipeline.parse(principal, body, request.anthropic_version or LATEST_VERSION,
                                      tuple(request.anthropic_beta), count_tokens,
                                      _options(context) if info is not None else None, info)
        return principal, parsed

    @staticmethod
    async def _send_headers(context: Any, info: RequestInfo) -> None:
        ctx = call_context.current()
        metadata = [(headers.ANTHROPIC_REQUEST_ID, ctx.request_id)] if ctx else []
        metadata += list(info.headers.items())
        send = getattr(context, "send_initial_metadata", None)
        if send is not None:
            await send(tuple(metadata))

    async def CreateMessage(self, request: pb.CreateMessageRequest, context: Any) -> pb.CreateMessageResponse:
        info = RequestInfo()
        principal, parsed = await self._request(request, context, info=info)
        assembled = await self._pipeline.create(principal, parsed, info)
        await self._send_headers(context, info)
        body = assembled.json()
        return pb.CreateMessageResponse(message=message_proto(json.loads(body)), body=body)

    async def StreamMessage(self, request: pb.StreamMessageRequest, context: Any
                            ) -> AsyncIterator[pb.StreamMessageResponse]:
        info = RequestInfo()
        principal, parsed = await self._request(request, context, info=info)
        usage: dict[str, Any] = {}
        started = False
        async for event in with_pings(self._pipeline.stream(principal, parsed, info), self._ping_interval):
            if not started:
                started = True
                await self._send_headers(context, info)
            typed = event_proto(event)
            if event.type == MESSAGE_START:
                usage = merge_usage({}, (event.view.get("message") or {}).get("usage"))
            elif event.type == MESSAGE_DELTA and typed is not None:
                # The typed view's message_delta carries the whole usage so far.
                usage = merge_usage(usage, event.view.get("usage"))
                typed.message_delta.usage.CopyFrom(usage_proto(usage))
            yield pb.StreamMessageResponse(event=typed, wire=wire_pb2.WireEvent(type=event.type, data=event.data))

    async def CountTokens(self, request: pb.CountTokensRequest, context: Any) -> pb.CountTokensResponse:
        principal, parsed = await self._request(request, context, count_tokens=True)
        info = RequestInfo()
        tokens, body = await self._pipeline.count_tokens(principal, parsed, info)
        await self._send_headers(context, info)
        return pb.CountTokensResponse(input_tokens=tokens, body=body)

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        principal = await self._pipeline.authenticate(self._begin(context))
        page = await self._pipeline.list_models(principal, request.limit, request.before_id, request.after_id,
                                                tuple(request.lifecycle))
        data = list(page.data)
        return pb.ListModelsResponse(data=data, has_more=page.has_more, first_id=data[0].id if data else "",
                                     last_id=data[-1].id if data else "", body=models_page_json(page))

    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.GetModelResponse:
        principal = await self._pipeline.authenticate(self._begin(context))
        return pb.GetModelResponse(model=await self._pipeline.get_model(principal, request.model_id))
