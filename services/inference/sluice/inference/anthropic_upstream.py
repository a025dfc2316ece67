"""The Anthropic Messages API through the official `anthropic` SDK.

The same adapter serves the real API and the local simulator; only base_url
differs. Requests go through the SDK's client (`AsyncAnthropic.post`): it
builds the URL, authenticates, applies the connect timeout and raises its
typed errors for a failed status. The body is the client's JSON as bytes
(the wire codec's template, with this candidate's `model` and `"stream":
true` put first), and the client's `anthropic-version` and `anthropic-beta`
go with it on every attempt, so what the client sent is what the API gets.
The answer's events pass through as the API sent them; the one edit is
message_start's model, set to the catalog id of the candidate.

The SDK's retries are off (max_retries=0): the inference core owns retries
and fallback, and must not retry after the first event. It uses the SDK's
own aiohttp transport (`DefaultAioHttpClient`).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
from anthropic._constants import RAW_RESPONSE_HEADER

from sluice.config.settings import UpstreamSettings
from sluice.llm.v1 import wire_pb2
from sluice.routing.v1 import candidate_pb2
from sluice.rpc.errors import UPSTREAM_STATUS, UPSTREAM_TYPE, FieldViolation, Reason, SluiceError
from sluice.wire import events as ev
from sluice.wire.request import LATEST_VERSION, upstream_body

# The API names the field first in a refusal: "max_tokens: 9 > 8, ...".
_FIELD_FIRST = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*): ")
MESSAGES_PATH = "/v1/messages"
COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
# Upstream HTTP status -> reason. The upstream's refusals of the request
# itself (400, 404, 413, 422) reach the client with their own status and
# message; 401/403 are Sluice's credentials, not the client's doing.
_STATUS_REASON = {
    400: Reason.UPSTREAM_REJECTED, 401: Reason.UPSTREAM_ERROR, 403: Reason.UPSTREAM_ERROR,
    404: Reason.UPSTREAM_NOT_FOUND, 413: Reason.UPSTREAM_TOO_LARGE, 422: Reason.UPSTREAM_REJECTED,
    429: Reason.UPSTREAM_RATE_LIMITED, 529: Reason.UPSTREAM_OVERLOADED,
}
_ERROR_TYPE_REASON = {
    "overloaded_error": Reason.UPSTREAM_OVERLOADED,
    "rate_limit_error": Reason.UPSTREAM_RATE_LIMITED,
    "invalid_request_error": Reason.UPSTREAM_REJECTED,
    "not_found_error": Reason.UPSTREAM_NOT_FOUND,
    "request_too_large": Reason.UPSTREAM_TOO_LARGE,
}


class AnthropicUpstream:
    def __init__(self, name: str, settings: UpstreamSettings) -> None:
        self.name = name
        self._client = anthropic.AsyncAnthropic(
            api_key=settings.api_key.get_secret_value() or "unset",
            base_url=settings.base_url,
            max_retries=0,
            timeout=anthropic.Timeout(None, connect=settings.connect_timeout_seconds),
            # The SDK's built-in OpenTelemetry spans: Sluice exports no traces
            # yet, and building the span attributes costs ~0.5 ms per call on
            # the request's critical path.
            open_telemetry=False,
            # The SDK's aiohttp transport: its C HTTP parser costs a fraction
            # of the default pure-Python one on every streamed chunk.
            http_client=anthropic.DefaultAioHttpClient(
                limits=httpx2.Limits(
                    max_connections=settings.max_connections, max_keepalive_connections=settings.max_connections
                ),
            ),
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def _post(self, path: str, request: wire_pb2.WireRequest, body: bytes, timeout: float | None,
                    stream: bool) -> httpx2.Response:
        """Sends `body` to `path`; the raw response, its body unread when
        `stream`. Raises SluiceError for a failed status or connection."""
        headers = {"anthropic-version": request.anthropic_version or LATEST_VERSION,
                   "content-type": "application/json"}
        if request.anthropic_beta:
            headers["anthropic-beta"] = ",".join(request.anthropic_beta)
        if stream:
            headers[RAW_RESPONSE_HEADER] = "stream"
        try:
            return await self._client.post(path, cast_to=httpx2.Response, content=body,
                                           options={"headers": headers, "timeout": timeout})
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from None
        except anthropic.APITimeoutError:
            raise SluiceError(Reason.DEADLINE_EXCEEDED, "upstream did not answer in time") from None
        except (anthropic.APIConnectionError, httpx2.TransportError, aiohttp.ClientError) as exc:
            raise SluiceError(Reason.UPSTREAM_UNAVAILABLE, f"upstream connection failed: {_describe(exc)}") from None
        except anthropic.APIError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream error: {exc.message}") from None

    async def stream(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
                     timeout: float | None) -> AsyncIterator[ev.Event]:
        """The candidate's answer as events. Raises SluiceError with an
        UPSTREAM_* reason: for a failed status before the stream, or an
        `error` event after it began (its type and message kept)."""
        body = upstream_body(request.body, [("model", candidate.upstream_model), ("stream", True)])
        response = await self._post(MESSAGES_PATH, request, body, timeout, stream=True)
        try:
            async for event in ev.sse_events(response.aiter_bytes()):
                if event.type == ev.ERROR:
                    raise _stream_error(event)
                if event.type == ev.MESSAGE_START:
                    event = ev.with_message_model(event, candidate.model_id)
                yield event
        except (httpx2.TransportError, aiohttp.ClientError) as exc:
            raise SluiceError(Reason.UPSTREAM_UNAVAILABLE, f"upstream connection failed: {_describe(exc)}") from None
        except ValueError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream sent a malformed event: {exc}") from None
        finally:
            await response.aclose()

    async def count_tokens(self, candidate: candidate_pb2.Candidate, request: wire_pb2.WireRequest,
                           timeout: float | None) -> tuple[int, bytes]:
        """(input_tokens, the answer's JSON) from the upstream's own count.
        Raises SluiceError as `stream` does, or UPSTREAM_ERROR for an answer
        without an integer input_tokens."""
        body = upstream_body(request.body, [("model", candidate.upstream_model)])
        response = await self._post(COUNT_TOKENS_PATH, request, body, timeout, stream=True)
        try:
            raw = await response.aread()
        except (httpx2.TransportError, aiohttp.ClientError) as exc:
            raise SluiceError(Reason.UPSTREAM_UNAVAILABLE, f"upstream connection failed: {_describe(exc)}") from None
        finally:
            await response.aclose()
        try:
            answer = json.loads(raw)
            tokens = answer["input_tokens"]
            if not isinstance(tokens, int) or isinstance(tokens, bool):
                raise TypeError("input_tokens is not an integer")
        except (ValueError, KeyError, TypeError) as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream count_tokens answer is malformed: {exc}") from None
        return tokens, raw


def _stream_error(event: ev.Event) -> SluiceError:
    """An `error` event after the stream started (HTTP 200 already sent):
    its type and message, as the upstream gave them."""
    err_type, message = _error_body(event.view)
    reason = _ERROR_TYPE_REASON.get(err_type, Reason.UPSTREAM_ERROR)
    return SluiceError(reason, message or "upstream stream error", metadata={UPSTREAM_TYPE: err_type or "api_error"})


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f"{type(exc).__name__}: {cause or exc}"


def _error_body(body: Any) -> tuple[str, str]:
    """(type, message) from Anthropic's error JSON, tolerating any shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return "", ""
    return str(error.get("type") or ""), str(error.get("message") or "")


def _status_error(exc: anthropic.APIStatusError) -> SluiceError:
    """The upstream's failed status as a SluiceError carrying its status,
    type and message (the message verbatim: the client sees the API's words)."""
    err_type, message = _error_body(exc.body)
    reason = _STATUS_REASON.get(exc.status_code) or _ERROR_TYPE_REASON.get(err_type, Reason.UPSTREAM_ERROR)
    if exc.status_code >= 500 and exc.status_code != 529:
        reason = Reason.UPSTREAM_ERROR
    retry_after = None
    header = exc.response.headers.get("retry-after") if exc.response is not None else None
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    metadata = {UPSTREAM_STATUS: str(exc.status_code)}
    if err_type:
        metadata[UPSTREAM_TYPE] = err_type
    message = message or exc.message
    field = _FIELD_FIRST.match(message) if exc.status_code in (400, 413, 422) else None
    violations = [FieldViolation(field.group(1), message[field.end():])] if field else []
    return SluiceError(reason, message, field_violations=violations, retry_after_s=retry_after, metadata=metadata)
