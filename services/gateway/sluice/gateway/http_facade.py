"""Anthropic-compatible HTTP facade: POST /v1/messages, JSON or SSE.

An `anthropic.Anthropic(base_url=..., api_key=...)` client works unchanged,
streaming helpers included. Errors are Anthropic's error JSON with its status
codes; an error after a stream has started is an SSE `error` event, as the API
itself sends.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from sluice.gateway.anthropic_json import parse_request, render_error_event, render_event, render_message
from sluice.gateway.pipeline import Pipeline, RequestInfo
from sluice.rpc import context as call_context
from sluice.rpc import headers
from sluice.rpc.errors import Reason, SluiceError, anthropic_error_body, http_error_headers
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

_ROUTE = "/v1/messages"
# The anthropic SDK states its own timeout in this header; honour it as the deadline.
_SDK_TIMEOUT = "x-stainless-timeout"


def _count(status: int, error_type: str = "") -> None:
    metrics.HTTP_REQUESTS.labels(_ROUTE, str(status), error_type).inc()


def error_response(err: SluiceError, request_id: str) -> web.Response:
    mapping = err.mapping
    hdrs = http_error_headers(err, request_id)
    _count(mapping.http_status, mapping.anthropic_type)
    metrics.ERRORS.labels("gateway_http", err.reason.value).inc()
    return web.Response(
        body=json.dumps(anthropic_error_body(err, request_id)), status=mapping.http_status,
        content_type="application/json", headers=hdrs,
    )


def _timeout(request: web.Request, default: float) -> float:
    """The request's deadline in seconds: our header (strict), else the SDK's
    stated timeout (informational: "None" or junk means none stated)."""
    raw = request.headers.get(headers.TIMEOUT_MS)
    if raw is not None:
        try:
            value = float(raw) / 1000
        except ValueError:
            raise SluiceError.bad_request(f"header {headers.TIMEOUT_MS}", "must be a number of milliseconds") from None
        if not 0 < value < float("inf"):
            raise SluiceError.bad_request(f"header {headers.TIMEOUT_MS}", "must be positive and finite")
        return min(value, default)
    try:
        stated = float(request.headers.get(_SDK_TIMEOUT, ""))
    except ValueError:
        return default
    return min(stated, default) if 0 < stated < float("inf") else default


class MessagesFacade:
    def __init__(self, pipeline: Pipeline, max_body_bytes: int, default_timeout_s: float) -> None:
        self._pipeline = pipeline
        self._max_body = max_body_bytes
        self._default_timeout = default_timeout_s

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self._max_body, middlewares=[_anthropic_errors])
        app.router.add_post(_ROUTE, self.messages)
        return app

    async def messages(self, request: web.Request) -> web.StreamResponse:
        request_id = call_context.new_request_id()
        try:
            call_context.begin(request_id, _timeout(request, self._default_timeout))
            if request.content_length is not None and request.content_length > self._max_body:
                raise SluiceError(Reason.REQUEST_TOO_LARGE,
                                  f"request body is {request.content_length} bytes; the limit is {self._max_body}")
            principal = await self._pipeline.authenticate(headers.presented_api_key(request.headers.get))
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise SluiceError(Reason.REQUEST_TOO_LARGE, f"request body exceeds {self._max_body} bytes") from None
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise SluiceError.bad_request("(body)", f"not valid JSON: {exc}") from None
            params, stream = parse_request(body)
            info = RequestInfo()
            if not stream:
                message = await self._pipeline.create(principal, params, info)
                _count(200)
                return web.Response(body=render_message(message), content_type="application/json",
                                    headers={headers.ANTHROPIC_REQUEST_ID: request_id, **info.rate_limit_headers})
            events = self._pipeline.stream(principal, params, info)
            # Wait for the first event before answering 200, so that failures
            # before the stream starts (404, 429, upstream 529) keep their status.
            first = await anext(events)
        except SluiceError as err:
            return error_response(err, request_id)
        return await self._stream(request, request_id, info, first, events)

    async def _stream(self, request: web.Request, request_id: str, info: RequestInfo, first, events  # type: ignore[no-untyped-def]
                      ) -> web.StreamResponse:
        response = web.StreamResponse(headers={
            "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache",
            headers.ANTHROPIC_REQUEST_ID: request_id, **info.rate_limit_headers,
        })
        await response.prepare(request)
        _count(200)
        try:
            await response.write(render_event(first))
            async for event in events:
                await response.write(render_event(event))
        except SluiceError as err:
            metrics.ERRORS.labels("gateway_http", err.reason.value).inc()
            await response.write(render_error_event(err.mapping.anthropic_type, err.message))
        except ConnectionResetError:
            log.info("client went away mid-stream")
        finally:
            await events.aclose()
        return response


@web.middleware
async def _anthropic_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """Unknown routes and methods get Anthropic error JSON, not aiohttp's text."""
    try:
        return await handler(request)
    except web.HTTPNotFound:
        return error_response(SluiceError(Reason.NOT_FOUND, f"no route for {request.path}"), call_context.new_request_id())
    except web.HTTPMethodNotAllowed:
        err = SluiceError(Reason.INVALID_REQUEST, f"method {request.method} is not allowed on {request.path}")
        return error_response(err, call_context.new_request_id())
