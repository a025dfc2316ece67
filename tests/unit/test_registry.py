"""A local call behaves like a gRPC call: same errors, deadlines, cleanup."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from sluice import call_context
from sluice.auth.v1 import auth_service_pb2 as auth_pb
from sluice.inference.v1 import inference_service_pb2 as inf_pb
from sluice.llm.v1 import wire_pb2
from sluice.rpc.errors import Reason, SluiceError, from_rpc_error
from sluice.rpc.registry import ServiceRegistry

AUTH = auth_pb.DESCRIPTOR.services_by_name["AuthService"]
INFERENCE = inf_pb.DESCRIPTOR.services_by_name["InferenceService"]


class FakeAuth:
    def __init__(self, behaviour):
        self.behaviour = behaviour

    async def Authenticate(self, request, context):
        return await self.behaviour(request, context)

    async def Admit(self, request, context):  # the registry needs every method of the service
        raise NotImplementedError

    Settle = Admit


def stub_for(behaviour):
    registry = ServiceRegistry()
    registry.add(FakeAuth(behaviour), AUTH)
    return registry.local_stub(AUTH.full_name)


async def test_sluice_error_becomes_a_status_with_details():
    async def fail(request, context):
        raise SluiceError.bad_request("api_key", "too long")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub_for(fail).Authenticate(auth_pb.AuthenticateRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    back = from_rpc_error(err.value)
    assert back.reason is Reason.INVALID_REQUEST and back.field_violations[0].field == "api_key"


async def test_unexpected_exception_becomes_internal_not_a_crash():
    async def boom(request, context):
        raise KeyError("oops")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub_for(boom).Authenticate(auth_pb.AuthenticateRequest())
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "oops" not in err.value.details(), "internals must not leak to callers"


async def test_timeout_is_deadline_exceeded():
    async def slow(request, context):
        await asyncio.sleep(5)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub_for(slow).Authenticate(auth_pb.AuthenticateRequest(), timeout=0.05)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_metadata_and_deadline_reach_the_callee():
    seen = {}

    async def look(request, context):
        seen["metadata"] = dict(context.invocation_metadata())
        seen["remaining"] = context.time_remaining()
        return auth_pb.AuthenticateResponse()

    await stub_for(look).Authenticate(auth_pb.AuthenticateRequest(), timeout=3,
                                      metadata=(("x-request-id", "req_abc"),))
    assert seen["metadata"] == {"x-request-id": "req_abc"}
    assert 2.5 < seen["remaining"] <= 3


class FakeInference:
    def __init__(self):
        self.closed = asyncio.Event()

    async def Generate(self, request, context):
        try:
            for _ in range(1000):
                yield inf_pb.GenerateResponse(event=wire_pb2.WireEvent(type="ping", data=b'{"type":"ping"}'))
                await asyncio.sleep(0.01)
        finally:
            self.closed.set()

    async def DeploymentHealth(self, request, context):
        return inf_pb.DeploymentHealthResponse()

    async def CountTokens(self, request, context):
        return inf_pb.CountTokensResponse(input_tokens=1)


async def test_closing_a_local_stream_runs_the_callees_cleanup():
    registry = ServiceRegistry()
    servicer = FakeInference()
    registry.add(servicer, INFERENCE)
    call = registry.local_stub(INFERENCE.full_name).Generate(inf_pb.GenerateRequest())
    assert (await call.__anext__()).event.type == "ping"
    call.cancel()
    await asyncio.wait_for(servicer.closed.wait(), 2)


async def test_stream_deadline_is_deadline_exceeded_and_cleans_up():
    registry = ServiceRegistry()
    servicer = FakeInference()
    registry.add(servicer, INFERENCE)
    call = registry.local_stub(INFERENCE.full_name).Generate(inf_pb.GenerateRequest(), timeout=0.1)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        async for _ in call:
            pass
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert servicer.closed.is_set()


def test_outgoing_caps_timeout_at_the_request_deadline():
    token = call_context._current.set(None)
    try:
        call_context.begin("req_x", 2.0)
        request_id, timeout = call_context.outgoing(10.0)
        assert request_id == "req_x"
        assert 1.5 < timeout <= 2.0
        assert call_context.outgoing(0.5)[1] == 0.5
    finally:
        call_context._current.reset(token)


async def test_a_message_that_does_not_decode_is_invalid_argument_with_details():
    """Over gRPC, bytes that are not the request message get INVALID_ARGUMENT
    with a BadRequest naming the message, not grpc's UNKNOWN."""
    from sluice.rpc.server import GrpcServer

    registry = ServiceRegistry()
    registry.add(FakeInference(), INFERENCE)
    server = GrpcServer(registry, "127.0.0.1:0", 1 << 20)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            for method, call in (("CountTokens", channel.unary_unary), ("Generate", channel.unary_stream)):
                invoke = call(f"/sluice.inference.v1.InferenceService/{method}")
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    result = invoke(b"\xff\xff\xff\xff", timeout=5)
                    if method == "Generate":
                        [r async for r in result]
                    else:
                        await result
                assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert f"{method if method == 'CountTokens' else 'Generate'}Request" in err.value.details()
                assert from_rpc_error(err.value).field_violations[0].field == "(message)"
    finally:
        await server.drain(0)
