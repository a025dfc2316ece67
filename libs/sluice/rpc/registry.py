"""The servicers a process hosts, reachable over gRPC and in-process alike.

`ServiceRegistry.add` wraps each RPC of a servicer once: the wrapper sets the
call context from the caller's metadata and deadline, turns `SluiceError` (or a
downstream's gRPC error) into a status with google.rpc details, turns anything
unexpected into INTERNAL without letting it escape, and records metrics. The
same wrapped handlers back both the gRPC server and `LocalStub`, which `all`
mode uses instead of a socket, so a service cannot tell how it was called.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor as _descriptor
from google.protobuf import message_factory
from google.protobuf.message import DecodeError, Message

from sluice import call_context
from sluice.rpc import headers
from sluice.rpc.errors import Reason, SluiceError, from_rpc_error
from sluice.telemetry import metrics, tracing

log = logging.getLogger(__name__)

UnaryFn = Callable[[Any, Any], Awaitable[Any]]
StreamFn = Callable[[Any, Any], AsyncGenerator[Any, None]]


def _enter(ctx: Any) -> bool:
    """Starts the call's context; True for a call that arrived over gRPC.
    Such a call starts a fresh context from its metadata and deadline; a
    local call already runs inside its caller's context."""
    if call_context.current() is not None:
        return False
    request_id = None
    for key, value in ctx.invocation_metadata() or ():
        if key == headers.REQUEST_ID:
            request_id = value
            break
    call_context.begin(request_id, ctx.time_remaining())
    return True


def _server_span(name: str, service: str, method: str, ctx: Any, remote: bool) -> tuple[Any, Any]:
    """(the RPC's SERVER span or None, the context to make current or None).
    The parent is the caller's traceparent over the network, the caller's
    current span in process. A call of an unsampled trace gets no span; over
    the network its caller's context is made current, so the trace id goes
    on to the next hop."""
    parent = tracing.extract(ctx.invocation_metadata()) if remote else None
    span = tracing.child(name, tracing.SpanKind.SERVER, parent,
                         {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method})
    return span, (tracing.in_context(span) if span is not None else parent)


def _span_failed(span: Any, err: SluiceError) -> None:
    if span is not None:
        span.set_attribute("rpc.grpc.status_code", err.mapping.grpc_code.value[0])
        tracing.fail(span, err.reason.value, err.message)


def _as_sluice_error(exc: BaseException, service: str, method: str) -> SluiceError:
    if isinstance(exc, SluiceError):
        return exc
    if isinstance(exc, grpc.RpcError):
        return from_rpc_error(exc)
    log.error("unhandled error in %s/%s", service, method, exc_info=exc)
    return SluiceError(Reason.INTERNAL, "internal error")


async def _abort(ctx: Any, err: SluiceError, service: str) -> None:
    metrics.ERRORS.labels(service, err.reason.value).inc()
    await ctx.abort(err.mapping.grpc_code, err.message, trailing_metadata=err.trailing_metadata())


class _MethodMetrics:
    """One method's metrics, with label children resolved once so the hot path does no label lookups."""

    __slots__ = ("_service", "_method", "_handled", "seconds")

    def __init__(self, service: str, method: str) -> None:
        self._service, self._method = service, method
        self._handled: dict[str, Any] = {}
        self.seconds = metrics.RPC_SECONDS.labels(service, method)

    def count(self, code: str) -> None:
        counter = self._handled.get(code)
        if counter is None:
            counter = self._handled[code] = metrics.RPC_HANDLED.labels(self._service, self._method, code)
        counter.inc()


def wrap_unary(service: str, method: str, fn: UnaryFn, full_name: str = "") -> UnaryFn:
    observed = _MethodMetrics(service, method)
    count, seconds = observed.count, observed.seconds
    span_name = f"{full_name or service}/{method}"

    async def handler(request: Any, ctx: Any) -> Any:
        remote = _enter(ctx)
        start = time.perf_counter()
        span = token = None
        if tracing.ENABLED:
            span, current = _server_span(span_name, full_name or service, method, ctx, remote)
            token = tracing.attach_context(current) if current is not None else None
        try:
            response = await fn(request, ctx)
            count("OK")
            return response
        except (grpc.aio.AbortError, asyncio.CancelledError):
            count("CANCELLED")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            err = _as_sluice_error(exc, service, method)
            count(err.mapping.grpc_code.name)
            _span_failed(span, err)
            await _abort(ctx, err, service)
        finally:
            seconds.observe(time.perf_counter() - start)
            if token is not None:
                tracing.detach(token)
            if span is not None:
                span.end()

    return handler


def wrap_stream(service: str, method: str, fn: StreamFn, full_name: str = "") -> StreamFn:
    observed = _MethodMetrics(service, method)
    count, seconds = observed.count, observed.seconds
    span_name = f"{full_name or service}/{method}"

    async def handler(request: Any, ctx: Any) -> AsyncGenerator[Any, None]:
        remote = _enter(ctx)
        start = time.perf_counter()
        stream = fn(request, ctx)
        span, current = _server_span(span_name, full_name or service, method, ctx, remote) if tracing.ENABLED \
            else (None, None)
        try:
            async with aclosing(tracing.stepping(stream, current)) as steps:
                async for item in steps:
                    yield item
            count("OK")
        except (grpc.aio.AbortError, asyncio.CancelledError, GeneratorExit):
            count("CANCELLED")
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a status
            err = _as_sluice_error(exc, service, method)
            count(err.mapping.grpc_code.name)
            _span_failed(span, err)
            await _abort(ctx, err, service)
        finally:
            await stream.aclose()
            seconds.observe(time.perf_counter() - start)
            if span is not None:
                span.end()

    return handler


def _decode(req_cls: type[Message], data: bytes) -> Any:
    try:
        return req_cls.FromString(data)
    except DecodeError as exc:
        raise SluiceError.bad_request("(message)", f"not a valid {req_cls.DESCRIPTOR.full_name}: {exc}") from None


def _decoding_unary(fn: UnaryFn, req_cls: type) -> UnaryFn:
    async def decoded(data: bytes, ctx: Any) -> Any:
        return await fn(_decode(req_cls, data), ctx)

    return decoded


def _decoding_stream(fn: StreamFn, req_cls: type, client_streaming: bool) -> StreamFn:
    async def requests(messages: AsyncIterator[bytes]) -> AsyncGenerator[Any, None]:
        async for data in messages:
            yield _decode(req_cls, data)

    async def decoded(data: Any, ctx: Any) -> AsyncGenerator[Any, None]:
        # Decoded on the first turn, inside the wrapper's error handling.
        async with aclosing(fn(requests(data) if client_streaming else _decode(req_cls, data), ctx)) as inner:
            async for item in inner:
                yield item

    return decoded


@dataclass(frozen=True)
class _Method:
    name: str
    streaming: bool
    handler: Any
    request_cls: type
    response_cls: type


class ServiceRegistry:
    """Servicers hosted by this process, by full service name."""

    def __init__(self) -> None:
        self._methods: dict[str, dict[str, _Method]] = {}
        self._generic: list[grpc.GenericRpcHandler] = []

    def add(self, servicer: object, service: _descriptor.ServiceDescriptor) -> None:
        short = service.name
        methods: dict[str, _Method] = {}
        grpc_handlers: dict[str, grpc.RpcMethodHandler] = {}
        for m in service.methods:
            if m.client_streaming and not m.server_streaming:
                raise ValueError(f"{service.full_name}/{m.name}: client-only streaming is not supported")
            fn = getattr(servicer, m.name)
            req_cls = message_factory.GetMessageClass(m.input_type)
            resp_cls = message_factory.GetMessageClass(m.output_type)
            # Over gRPC, requests arrive as bytes and are decoded inside the
            # wrapper, so a message that does not decode is INVALID_ARGUMENT
            # with details (grpc's own deserializer would answer UNKNOWN).
            wrapped: UnaryFn | StreamFn
            remote: UnaryFn | StreamFn
            if m.server_streaming:
                # Bidirectional methods take the request iterator where
                # server-streaming ones take the request: one wrapper serves both.
                wrapped = wrap_stream(short, m.name, fn, service.full_name)
                remote = wrap_stream(short, m.name, _decoding_stream(fn, req_cls, m.client_streaming),
                                     service.full_name)
                make_handler = (grpc.stream_stream_rpc_method_handler if m.client_streaming
                                else grpc.unary_stream_rpc_method_handler)
                grpc_handlers[m.name] = make_handler(remote, response_serializer=resp_cls.SerializeToString)
            else:
                wrapped = wrap_unary(short, m.name, fn, service.full_name)
                remote = wrap_unary(short, m.name, _decoding_unary(fn, req_cls), service.full_name)
                grpc_handlers[m.name] = grpc.unary_unary_rpc_method_handler(
                    remote, response_serializer=resp_cls.SerializeToString)
            methods[m.name] = _Method(m.name, m.server_streaming, wrapped, req_cls, resp_cls)
        self._methods[service.full_name] = methods
        self._generic.append(grpc.method_handlers_generic_handler(service.full_name, grpc_handlers))

    def hosts(self, full_name: str) -> bool:
        return full_name in self._methods

    @property
    def service_names(self) -> list[str]:
        return list(self._methods)

    @property
    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        return list(self._generic)

    def local_stub(self, full_name: str) -> LocalStub:
        return LocalStub(self._methods[full_name])


# -- in-process calls ---------------------------------------------------------


class _LocalAbort(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Any) -> None:
        super().__init__(details)
        self.code, self.details, self.trailing = code, details, trailing


class LocalContext:
    """The part of grpc.aio.ServicerContext that Sluice servicers use."""

    __slots__ = ("_metadata", "_deadline")

    def __init__(self, metadata: Any, timeout: float | None) -> None:
        self._metadata = tuple(metadata or ())
        self._deadline = time.monotonic() + timeout if timeout is not None else None

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def peer(self) -> str:
        return "local"

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()) -> None:
        raise _LocalAbort(code, details, trailing_metadata)


def _rpc_error(code: grpc.StatusCode, details: str, trailing: Any = ()) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details=details
    )


class _LocalStreamCall:
    """Iterates a local streaming handler like a grpc.aio.UnaryStreamCall.

    The deadline is one timer for the whole call, not a timeout per event: if
    it fires while the caller waits for the next event, that wait is cancelled
    and becomes DEADLINE_EXCEEDED; if it fires between events, the next read
    fails the same way. Either way the callee's generator is closed.
    """

    __slots__ = ("_stream", "_deadline", "_timer", "_task", "_waiting", "_expired")

    def __init__(self, stream: AsyncGenerator[Any, None], ctx: LocalContext) -> None:
        self._stream = stream
        self._deadline = ctx._deadline  # same module
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task | None = None  # the consumer, found on the first read
        self._waiting = False
        self._expired = False

    def __aiter__(self) -> _LocalStreamCall:
        return self

    def _on_deadline(self) -> None:
        self._expired = True
        if self._waiting and self._task is not None:
            self._task.cancel()

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def __anext__(self) -> Any:
        if self._expired:
            await self._stream.aclose()
            raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        if self._deadline is not None and self._timer is None:
            self._task = asyncio.current_task()
            self._timer = asyncio.get_running_loop().call_later(
                max(0.0, self._deadline - time.monotonic()), self._on_deadline
            )
        self._waiting = True
        try:
            return await self._stream.__anext__()
        except StopAsyncIteration:
            self._stop_timer()
            raise
        except _LocalAbort as abort:
            self._stop_timer()
            raise _rpc_error(abort.code, abort.details, abort.trailing) from None
        except asyncio.CancelledError:
            # Ours (the deadline) unless someone else cancelled the task too.
            if self._expired and self._task is not None and self._task.uncancel() == 0:
                raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
            self._stop_timer()
            raise
        finally:
            self._waiting = False

    def cancel(self) -> bool:
        # Closing the generator runs the callee's cleanup (e.g. closing the
        # upstream HTTP stream) in the caller's task.
        self._stop_timer()
        asyncio.get_running_loop().create_task(self._stream.aclose())
        return True

    async def aclose(self) -> None:
        self._stop_timer()
        await self._stream.aclose()


class LocalStub:
    """Calls a hosted service's wrapped handlers directly, no socket.

    Attribute access mirrors the generated stub: `await stub.Method(req,
    timeout=..., metadata=...)`, `async for ev in stub.StreamMethod(req)`, or
    `async for ev in stub.BidiMethod(async_iterator_of_requests)`.
    Errors surface as grpc.aio.AioRpcError, exactly as over a channel.
    """

    def __init__(self, methods: dict[str, _Method]) -> None:
        for name, method in methods.items():
            setattr(self, name, self._bind(method))

    @staticmethod
    def _bind(method: _Method) -> Callable[..., Any]:
        handler = method.handler
        if method.streaming:
            def call_stream(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
                ctx = LocalContext(metadata, timeout)
                return _LocalStreamCall(handler(request, ctx), ctx)

            return call_stream

        async def call_unary(request: Any, timeout: float | None = None, metadata: Any = None) -> Any:
            ctx = LocalContext(metadata, timeout)
            try:
                if timeout is None:
                    return await handler(request, ctx)
                async with asyncio.timeout(timeout):
                    return await handler(request, ctx)
            except _LocalAbort as abort:
                raise _rpc_error(abort.code, abort.details, abort.trailing) from None
            except TimeoutError:
                raise _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None

        return call_unary
