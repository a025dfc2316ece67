"""The request path: auth, then safety + cache + routing at once, then inference.

The pipeline knows the other services only as stubs it was given (local or
remote, it cannot tell) and speaks only protos to them. Downstream failures
arrive as gRPC errors and leave as SluiceError with the downstream's reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from sluice.auth.v1 import auth_service_pb2, principal_pb2
from sluice.cache.v1 import cache_service_pb2
from sluice.gateway.validation import validate
from sluice.inference.v1 import inference_service_pb2
from sluice.llm.stream import MessageAssembler, StreamProtocolError, message_to_events
from sluice.llm.v1 import messages_pb2 as m
from sluice.routing.v1 import routing_service_pb2
from sluice.rpc.errors import Reason, SluiceError, from_rpc_error
from sluice.safety.v1 import safety_service_pb2, verdict_pb2

T = TypeVar("T")


@dataclass(frozen=True)
class Stages:
    """Stubs for the services the gateway calls."""

    auth: Any
    safety: Any
    cache: Any
    routing: Any
    inference: Any


async def _call(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.RpcError as exc:
        raise from_rpc_error(exc) from None


async def _all_or_nothing(*awaitables: Awaitable[Any]) -> list[Any]:
    """Runs concurrently; the first failure cancels the rest and is raised."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class Pipeline:
    def __init__(self, stages: Stages, stage_timeout_s: float) -> None:
        self._s = stages
        self._stage_timeout = stage_timeout_s

    async def authenticate(self, api_key: str) -> principal_pb2.Principal:
        response = await _call(
            self._s.auth.Authenticate(auth_service_pb2.AuthenticateRequest(api_key=api_key), timeout=self._stage_timeout)
        )
        return response.principal

    async def stream(self, principal: principal_pb2.Principal, params: m.MessageParams) -> AsyncIterator[m.StreamEvent]:
        """Events of the response, in Messages API order."""
        validate(params)
        t = self._stage_timeout
        safety, cached, route = await _all_or_nothing(
            _call(self._s.safety.CheckInput(safety_service_pb2.CheckInputRequest(principal=principal, params=params), timeout=t)),
            _call(self._s.cache.Lookup(cache_service_pb2.LookupRequest(principal=principal, params=params), timeout=t)),
            _call(self._s.routing.Route(
                routing_service_pb2.RouteRequest(principal=principal, requested_model=params.model), timeout=t)),
        )
        verdict = safety.verdict
        if verdict.action == verdict_pb2.ACTION_BLOCK:
            raise SluiceError(Reason.POLICY_BLOCKED, "request blocked by safety policy",
                              metadata={"rule_ids": ",".join(verdict.rule_ids), "policy_version": verdict.policy_version})
        if verdict.action == verdict_pb2.ACTION_REDACT and safety.HasField("redacted_params"):
            params = safety.redacted_params
        if cached.hit:
            for event in message_to_events(cached.message):
                yield event
            return
        call = self._s.inference.Generate(
            inference_service_pb2.GenerateRequest(params=params, candidates=route.candidates)
        )
        try:
            async for response in call:
                yield response.event
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            # Reaches the upstream when the client went away mid-stream.
            call.cancel()

    async def create(self, principal: principal_pb2.Principal, params: m.MessageParams) -> m.AssistantMessage:
        """The whole response, assembled from the stream."""
        assembler = MessageAssembler()
        try:
            async for event in self.stream(principal, params):
                assembler.feed(event)
        except StreamProtocolError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream stream was malformed: {exc}") from None
        if not assembler.done:
            raise SluiceError(Reason.UPSTREAM_ERROR, "upstream stream ended before message_stop")
        return assembler.message
