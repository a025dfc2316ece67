"""Anthropic-compatible HTTP facade: the Messages API as clients know it.

Routes: POST /v1/messages (JSON or SSE), POST /v1/messages/count_tokens,
GET /v1/models and GET /v1/models/{model_id}. An `anthropic.Anthropic(
base_url=..., api_key=...)` client, or the TypeScript SDK, works unchanged,
streaming helpers included. The body goes on as the client wrote it and the
answer comes back as the upstream wrote it (`sluice.wire`); the client's
anthropic-version and anthropic-beta headers travel with the request.

Errors are Anthropic's error JSON with its status codes; an error after a
stream has started is an SSE `error` event, as the API itself sends. While a
stream is silent, a `ping` event goes out every
`gateway.stream_ping_interval_seconds`, so idle-timeout proxies keep it open.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from sluice import call_context
from sluice.auth.v1 import principal_pb2
from sluice.catalog.models_api import DEFAULT_LIMIT, MAX_LIMIT
from sluice.gateway.pipeline import Pipeline, RequestInfo, models_page_json
from sluice.rpc import headers
from sluice.rpc.batching import ready_batches
from sluice.rpc.errors import (
    Reason,
    SluiceError,
    anthropic_error_body,
    anthropic_error_type,
    http_error_headers,
)
from sluice.telemetry import metrics, tracing
from sluice.wire import events as wire_events
from sluice.wire.events import Event
from sluice.wire.request import MessagesRequest, check_version_for_sluice

log = logging.getLogger(__name__)

MESSAGES = "/v1/messages"
COUNT_TOKENS = "/v1/messages/count_tokens"
MODELS = "/v1/models"
MODEL = "/v1/models/{model_id}"
# The anthropic SDK states its own timeout in this header; honour it as the deadline.
_SDK_TIMEOUT = "x-stainless-timeout"
_JSON = "application/json"


def _count(route: str, status: int, error_type: str = "") -> None:
    metrics.HTTP_REQUESTS.labels(route, str(status), error_type).inc()


def error_response(err: SluiceError, request_id: str, route: str = MESSAGES) -> web.Response:
    mapping = err.mapping
    hdrs = http_error_headers(err, request_id)
    error_type = anthropic_error_type(err)
    _count(route, mapping.http_status, error_type)
    metrics.ERRORS.labels("gateway_http", err.reason.value).inc()
    return web.Response(body=json.dumps(anthropic_error_body(err, request_id)), status=mapping.http_status,
                        content_type=_JSON, headers=hdrs)


def _timeout(request: web.Request, default: float) -> float:
    """The request's deadline in seconds: our header (strict), else the SDK's
    stated timeout (informational: "None" or junk means none stated)."""
    raw = request.headers.get(headers.TIMEOUT_MS)
    if raw is not None:
        try:
            value = float(raw) / 1000
        except ValueError:
            raise SluiceError.bad_request(f"header {headers.TIMEOUT_MS}", "must be a number of milliseconds") from None
        if not _MIN_DEADLINE_S <= value < float("inf"):
            raise SluiceError.bad_request(f"header {headers.TIMEOUT_MS}",
                                          f"must be at least {_MIN_DEADLINE_S * 1000:.0f} and finite")
        return min(value, default)
    try:
        stated = float(request.headers.get(_SDK_TIMEOUT, ""))
    except ValueError:
        return default
    return min(stated, default) if _MIN_DEADLINE_S <= stated < float("inf") else default


# Request body encodings aiohttp decodes (Brotli only with the optional package, not installed).
_BODY_ENCODINGS = frozenset({"identity", "gzip", "deflate"})

# The shortest deadline a client may set: below it no answer can arrive in time (a model's
# first token alone takes longer), so it would only turn into a 504 the client caused. A
# shorter x-sluice-timeout-ms is refused (400); a shorter SDK timeout is read as none stated.
_MIN_DEADLINE_S = 1.0


def _one_credential(request: web.Request) -> None:
    """Refuses a request that presents more than one key (x-api-key repeated with different
    values, or an x-api-key and a different Bearer token): which one counts would otherwise be
    the order of the headers, as a body's repeated key is refused rather than guessed. Raises
    SluiceError MALFORMED_API_KEY (401)."""
    if len(headers.presented_api_keys(lambda name: request.headers.getall(name, ()))) > 1:
        raise SluiceError(Reason.MALFORMED_API_KEY, "more than one API key presented (x-api-key, Authorization: "
                                                    "Bearer): send exactly one")


def api_headers(request: web.Request) -> tuple[str | None, tuple[str, ...]]:
    """The client's anthropic-version (None when it sent none) and its
    anthropic-beta values, comma lists split, in order."""
    betas = tuple(b.strip() for value in request.headers.getall(headers.ANTHROPIC_BETA, ())
                  for b in value.split(",") if b.strip())
    return request.headers.get(headers.ANTHROPIC_VERSION), betas


def _traced(handler: Callable[[MessagesFacade, web.Request], Awaitable[web.StreamResponse]]
            ) -> Callable[[MessagesFacade, web.Request], Awaitable[web.StreamResponse]]:
    """With tracing on: the request's SERVER span (OpenTelemetry HTTP
    conventions), its parent the client's W3C traceparent when it sent one,
    and the trace id in the x-sluice-trace-id header of any answer."""
    @functools.wraps(handler)
    async def traced(self: MessagesFacade, request: web.Request) -> web.StreamResponse:
        if not tracing.ENABLED:
            return await handler(self, request)
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else request.path
        span = tracing.start(f"{request.method} {route}", tracing.SpanKind.SERVER, tracing.extract(request.headers),
                             {"http.request.method": request.method, "http.route": route, "url.scheme": "http",
                              "url.path": request.path[:256]})
        token = tracing.attach(span)
        try:
            response = await handler(self, request)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 500:
                tracing.fail(span, str(response.status))
            if not response.prepared:
                response.headers.setdefault(headers.TRACE_ID, tracing.trace_id(span))
            return response
        finally:
            tracing.detach(token)
            span.end()

    return traced


class MessagesFacade:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int, default_timeout_s: float,
                 ping_interval_s: float = 10.0) -> None:
        self._pipeline = pipeline
        self._max_body = max_body_bytes
        self._default_timeout = default_timeout_s
        self._ping_interval = ping_interval_s

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[_anthropic_errors])
        app.router.add_post(MESSAGES, self.messages)
        app.router.add_post(COUNT_TOKENS, self.count_tokens)
        app.router.add_get(MODELS, self.list_models)
        app.router.add_get(MODEL, self.get_model)
        return app

    async def _begin(self, request: web.Request, request_id: str, route: str | None = None
                     ) -> principal_pb2.Principal:
        call_context.begin(request_id, _timeout(request, self._default_timeout))
        _one_credential(request)
        return await self._pipeline.authenticate(headers.presented_api_key(request.headers.get), route)

    async def _parsed(self, request: web.Request, request_id: str, count_tokens: bool = False,
                      info: RequestInfo | None = None) -> tuple[principal_pb2.Principal, MessagesRequest]:
        """The caller and its request: authenticated, the body read within
        the size limit and checked with the client's version, betas and
        priority (into `info`)."""
        principal = await self._begin(request, request_id, "count_tokens" if count_tokens else "messages")
        raw = await self._body(request)
        version, betas = api_headers(request)
        options = {name: tuple(request.headers.getall(name, ())) for name in headers.OPTIONS} \
            if info is not None else None
        return principal, self._pipeline.parse(principal, raw, version, betas, count_tokens, options, info)

    async def _body(self, request: web.Request) -> bytes:
        encodings = [e.strip().lower() for e in request.headers.get("content-encoding", "").split(",") if e.strip()]
        unknown = [e for e in encodings if e not in _BODY_ENCODINGS]
        if unknown:
            raise SluiceError.bad_request("header content-encoding",
                                          f"{unknown[0]!r} is not an encoding Sluice reads "
                                          f"({', '.join(sorted(_BODY_ENCODINGS))})")
        if request.content_length is not None and request.content_length > self._max_body:
            raise SluiceError(Reason.REQUEST_TOO_LARGE,
                              f"request body is {request.content_length} bytes; the limit is {self._max_body}")
        try:
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise SluiceError(Reason.REQUEST_TOO_LARGE, f"request body exceeds {self._max_body} bytes") from None
        except (RequestPayloadError, HttpProcessingError) as exc:
            # e.g. `content-encoding: gzip` on a body that is not gzip
            cause = exc.__cause__ or exc
            raise SluiceError.bad_request("(body)", f"the body could not be read as sent "
                                          f"(content-encoding {request.headers.get('content-encoding', 'none')}): "
                                          f"{str(cause)[:200]}") from None

    @_traced
    async def messages(self, request: web.Request) -> web.StreamResponse:
        request_id = call_context.new_request_id()
        info = RequestInfo()
        try:
            principal, parsed = await self._parsed(request, request_id, info=info)
            if not parsed.stream:
                assembled = await self._pipeline.create(principal, parsed, info)
                _count(MESSAGES, 200)
                return web.Response(body=assembled.json(), content_type=_JSON,
                                    headers={headers.ANTHROPIC_REQUEST_ID: request_id, **info.headers})
            events = self._pipeline.stream(principal, parsed, info)
            # Wait for the first event before answering 200, so that failures
            # before the stream starts (404, 429, upstream 529) keep their status.
            first = await anext(events)
        except SluiceError as err:
            return error_response(err, request_id, MESSAGES)
        return await self._stream(request, request_id, info, first, events)

    async def _stream(self, request: web.Request, request_id: str, info: RequestInfo, first: Event,
                      events: AsyncGenerator[Event, None]) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
            headers.ANTHROPIC_REQUEST_ID: request_id, **info.headers,
        })
        await response.prepare(request)
        _count(MESSAGES, 200)
        pinger = _Pinger(response, self._ping_interval)
        try:
            await pinger.write(first.sse())
            # Events that are ready together go out in one write (one syscall, not one each).
            async for batch in ready_batches(events):
                await pinger.write(b"".join([event.sse() for event in batch]))
        except SluiceError as err:
            metrics.ERRORS.labels("gateway_http", err.reason.value).inc()
            await pinger.write(wire_events.error(anthropic_error_type(err), err.message).sse())
        except ConnectionResetError:
            log.info("client went away mid-stream")
        except Exception:  # a bug after the 200: the stream still ends as the API ends one
            log.exception("unhandled error mid-stream")
            metrics.ERRORS.labels("gateway_http", Reason.INTERNAL.value).inc()
            await pinger.write(wire_events.error("api_error", "internal error").sse())
        finally:
            pinger.stop()
            await events.aclose()
        return response

    @_traced
    async def count_tokens(self, request: web.Request) -> web.StreamResponse:
        request_id = call_context.new_request_id()
        info = RequestInfo()
        try:
            principal, parsed = await self._parsed(request, request_id, count_tokens=True)
            _, body = await self._pipeline.count_tokens(principal, parsed, info)
        except SluiceError as err:
            return error_response(err, request_id, COUNT_TOKENS)
        _count(COUNT_TOKENS, 200)
        return web.Response(body=body, content_type=_JSON,
                            headers={headers.ANTHROPIC_REQUEST_ID: request_id, **info.headers})

    async def _models_caller(self, request: web.Request, request_id: str) -> principal_pb2.Principal:
        """The caller of a Models API route, which Sluice answers itself
        (so the API version must be one it knows)."""
        principal = await self._begin(request, request_id)
        check_version_for_sluice(api_headers(request)[0])
        return principal

    @_traced
    async def list_models(self, request: web.Request) -> web.StreamResponse:
        request_id = call_context.new_request_id()
        try:
            principal = await self._models_caller(request, request_id)
            query = request.query
            try:
                limit = int(query.get("limit", str(DEFAULT_LIMIT)))
            except ValueError:
                raise SluiceError.bad_request("limit", "Input should be a valid integer") from None
            if not 1 <= limit <= MAX_LIMIT:  # and 0 would mean "unset" to the routing service
                raise SluiceError.bad_request("limit", f"Input should be between 1 and {MAX_LIMIT}")
            lifecycle = (*query.getall("lifecycle[]", ()), *query.getall("lifecycle", ()))
            page = await self._pipeline.list_models(principal, limit, query.get("before_id", ""),
                                                    query.get("after_id", ""), lifecycle)
        except SluiceError as err:
            return error_response(err, request_id, MODELS)
        _count(MODELS, 200)
        return web.Response(body=models_page_json(page), content_type=_JSON,
                            headers={headers.ANTHROPIC_REQUEST_ID: request_id})

    @_traced
    async def get_model(self, request: web.Request) -> web.StreamResponse:
        request_id = call_context.new_request_id()
        try:
            principal = await self._models_caller(request, request_id)
            model = await self._pipeline.get_model(principal, request.match_info["model_id"])
        except SluiceError as err:
            return error_response(err, request_id, MODEL)
        _count(MODEL, 200)
        return web.Response(body=model.json, content_type=_JSON, headers={headers.ANTHROPIC_REQUEST_ID: request_id})


class _Pinger:
    """Writes a stream's events, and a `ping` whenever nothing was written
    for `interval` seconds (0: never). One task per stream, woken once per
    interval; writes never interleave, since each is one transport write."""

    def __init__(self, response: web.StreamResponse, interval: float) -> None:
        self._response = response
        self._interval = interval
        self._last = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run()) if interval > 0 else None

    async def write(self, data: bytes) -> None:
        self._last = time.monotonic()
        await self._response.write(data)

    async def _run(self) -> None:
        ping = wire_events.ping().sse()
        try:
            while True:
                await asyncio.sleep(max(self._last + self._interval - time.monotonic(), 0.0))
                if time.monotonic() - self._last >= self._interval:
                    metrics.STREAM_PINGS.inc()
                    await self.write(ping)
        except (ConnectionResetError, asyncio.CancelledError):
            return

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


@web.middleware
async def _anthropic_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Unknown routes and methods get Anthropic error JSON, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(SluiceError(Reason.NOT_FOUND, f"no route for {request.path}"),
                              call_context.new_request_id(), "(unknown)")
    except web.HTTPMethodNotAllowed:
        err = SluiceError(Reason.INVALID_REQUEST, f"method {request.method} is not allowed on {request.path}")
        return error_response(err, call_context.new_request_id(), "(unknown)")
    except web.HTTPException:
        raise
    except Exception:  # a bug: answered as the API would, counted, logged once
        log.exception("unhandled error answering %s %s", request.method, request.path)
        ctx = call_context.current()  # the id the logs and records already carry, when there is one
        return error_response(SluiceError(Reason.INTERNAL, "internal error"),
                              ctx.request_id if ctx else call_context.new_request_id(),
                              request.path if request.path in (MESSAGES, COUNT_TOKENS, MODELS) else "(other)")
