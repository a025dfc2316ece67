"""The Anthropic Messages API through the official `anthropic` SDK.

The same adapter serves the real API and the local simulator; only base_url
differs. It uses the SDK's own aiohttp transport (`DefaultAioHttpClient`).
The SDK's retries are off (max_retries=0) because the inference core owns
retries and fallback, and must not retry after the first event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import httpx2
from google.protobuf import json_format

from sluice.config.settings import UpstreamSettings
from sluice.llm.v1 import messages_pb2 as m
from sluice.routing.v1 import candidate_pb2
from sluice.rpc.errors import Reason, SluiceError

_TTL = {m.CacheControl.TTL_FIVE_MINUTES: "5m", m.CacheControl.TTL_ONE_HOUR: "1h"}
_ROLE = {m.ROLE_USER: "user", m.ROLE_ASSISTANT: "assistant"}
_TOOL_CHOICE = {m.ToolChoice.MODE_AUTO: "auto", m.ToolChoice.MODE_ANY: "any",
                m.ToolChoice.MODE_TOOL: "tool", m.ToolChoice.MODE_NONE: "none"}
# Upstream HTTP status -> reason. 408/409 and other 5xx are retryable server trouble.
_STATUS_REASON = {
    400: Reason.UPSTREAM_REJECTED, 401: Reason.UPSTREAM_ERROR, 403: Reason.UPSTREAM_ERROR,
    404: Reason.UPSTREAM_REJECTED, 413: Reason.UPSTREAM_REJECTED, 422: Reason.UPSTREAM_REJECTED,
    429: Reason.UPSTREAM_RATE_LIMITED, 529: Reason.UPSTREAM_OVERLOADED,
}
_ERROR_TYPE_REASON = {
    "overloaded_error": Reason.UPSTREAM_OVERLOADED,
    "rate_limit_error": Reason.UPSTREAM_RATE_LIMITED,
    "invalid_request_error": Reason.UPSTREAM_REJECTED,
    "request_too_large": Reason.UPSTREAM_REJECTED,
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

    async def stream(
        self, candidate: candidate_pb2.Candidate, params: m.MessageParams, timeout: float | None
    ) -> AsyncIterator[m.StreamEvent]:
        kwargs = request_kwargs(params, candidate.upstream_model)
        usage = m.Usage()
        try:
            # The SDK builds, authenticates and sends the request and raises its
            # typed errors for a failed status; the event stream is read raw
            # because validating each event into SDK models cost more CPU than
            # the rest of the gateway's work on the request together.
            async with self._client.messages.with_streaming_response.create(
                **kwargs, stream=True, timeout=timeout
            ) as response:
                async for kind, data in sse_events(response.iter_bytes()):
                    if kind == "error":
                        raise _stream_error(data)
                    try:
                        event = to_event(kind, data, usage)
                    except (KeyError, TypeError, AttributeError) as exc:
                        raise ValueError(f"{kind} event lacks or mistypes {exc}") from None
                    if event is not None:
                        if event.HasField("message_start"):
                            event.message_start.message.model = candidate.model_id
                        yield event
        except anthropic.APIStatusError as exc:
            raise _status_error(exc) from None
        except anthropic.APITimeoutError:
            raise SluiceError(Reason.DEADLINE_EXCEEDED, "upstream did not answer in time") from None
        except (anthropic.APIConnectionError, httpx2.TransportError, aiohttp.ClientError) as exc:
            raise SluiceError(Reason.UPSTREAM_UNAVAILABLE, f"upstream connection failed: {_describe(exc)}") from None
        except anthropic.APIError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream error: {exc.message}") from None
        except ValueError as exc:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"upstream sent a malformed event: {exc}") from None


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """(event type, parsed data) for each server-sent event in a byte stream.

    Follows the SSE framing the Messages API uses: `event:` and `data:` lines,
    events separated by a blank line, LF or CRLF line ends, `:` comments.
    """
    buffer = b""
    async for chunk in chunks:
        buffer += chunk
        if b"\r" in buffer:
            buffer = buffer.replace(b"\r\n", b"\n")
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                break
            block, buffer = buffer[:end], buffer[end + 2:]
            kind, data_lines = "", []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data_lines.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    kind = line[6:].strip().decode()
            if not data_lines:
                continue
            data = json.loads(b"\n".join(data_lines))
            if not isinstance(data, dict):
                raise ValueError("event data is not a JSON object")
            yield kind or str(data.get("type", "")), data
    if buffer.strip():
        raise ValueError("stream ended inside an event")


def _stream_error(data: dict[str, Any]) -> SluiceError:
    """An `error` event after the stream started (HTTP 200 already sent)."""
    err_type, message = _error_body(data)
    reason = _ERROR_TYPE_REASON.get(err_type, Reason.UPSTREAM_ERROR)
    return SluiceError(reason, f"upstream: {message or 'stream error'}", metadata={"upstream_type": err_type})


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
    err_type, message = _error_body(exc.body)
    reason = _ERROR_TYPE_REASON.get(err_type) or _STATUS_REASON.get(exc.status_code, Reason.UPSTREAM_ERROR)
    retry_after = None
    header = exc.response.headers.get("retry-after") if exc.response is not None else None
    if header:
        try:
            retry_after = float(header)
        except ValueError:
            retry_after = None
    return SluiceError(reason, f"upstream: {message or exc.message}", retry_after_s=retry_after,
                       metadata={"upstream_status": str(exc.status_code), "upstream_type": err_type})


# -- proto -> SDK request --------------------------------------------------------


def _cache_control(block: Any) -> dict[str, str] | None:
    if not block.HasField("cache_control"):
        return None
    cc = {"type": "ephemeral"}
    ttl = _TTL.get(block.cache_control.ttl)
    if ttl:
        cc["ttl"] = ttl
    return cc


def _block(block: m.ContentBlock) -> dict[str, Any]:
    kind = block.WhichOneof("block")
    if kind == "text":
        out: dict[str, Any] = {"type": "text", "text": block.text.text}
    elif kind == "image":
        img = block.image
        if img.WhichOneof("source") == "base64":
            source = {"type": "base64", "media_type": img.base64.media_type, "data": img.base64.data}
        else:
            source = {"type": "url", "url": img.url}
        out = {"type": "image", "source": source}
    elif kind == "tool_use":
        out = {"type": "tool_use", "id": block.tool_use.id, "name": block.tool_use.name,
               "input": json_format.MessageToDict(block.tool_use.input)}
    elif kind == "tool_result":
        tr = block.tool_result
        out = {"type": "tool_result", "tool_use_id": tr.tool_use_id, "content": [_block(b) for b in tr.content]}
        if tr.is_error:
            out["is_error"] = True
    else:
        raise SluiceError.bad_request("content", "empty content block")
    cc = _cache_control(block)
    if cc:
        out["cache_control"] = cc
    return out


def request_kwargs(params: m.MessageParams, model: str) -> dict[str, Any]:
    """Keyword arguments for `messages.create` from the request proto."""
    kwargs: dict[str, Any] = {
        "model": model,
        "max_tokens": params.max_tokens,
        "messages": [{"role": _ROLE[msg.role], "content": [_block(b) for b in msg.content]} for msg in params.messages],
    }
    if params.system:
        kwargs["system"] = [_block(b) for b in params.system]
    for name in ("temperature", "top_p", "top_k"):
        if params.HasField(name):
            kwargs[name] = getattr(params, name)
    if params.stop_sequences:
        kwargs["stop_sequences"] = list(params.stop_sequences)
    if params.metadata.user_id:
        kwargs["metadata"] = {"user_id": params.metadata.user_id}
    if params.tools:
        tools = []
        for tool in params.tools:
            t: dict[str, Any] = {"name": tool.name, "input_schema": json_format.MessageToDict(tool.input_schema)}
            if tool.description:
                t["description"] = tool.description
            cc = _cache_control(tool)
            if cc:
                t["cache_control"] = cc
            tools.append(t)
        kwargs["tools"] = tools
    if params.tool_choice.mode:
        choice: dict[str, Any] = {"type": _TOOL_CHOICE[params.tool_choice.mode]}
        if params.tool_choice.mode == m.ToolChoice.MODE_TOOL:
            choice["name"] = params.tool_choice.name
        if params.tool_choice.disable_parallel_tool_use:
            choice["disable_parallel_tool_use"] = True
        kwargs["tool_choice"] = choice
    return kwargs


# -- SDK event -> proto ----------------------------------------------------------


def _usage_into(target: m.Usage, source: Any) -> None:
    # message_delta usage is cumulative and may leave fields null: keep what we had.
    if not isinstance(source, dict):
        return
    for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = source.get(name)
        if isinstance(value, int):
            setattr(target, name, value)


def to_event(kind: str, data: dict[str, Any], usage: m.Usage) -> m.StreamEvent | None:
    """Converts one Messages API stream event; `usage` accumulates across the
    stream so message_delta always carries complete cumulative usage. Ping and
    event types added to the API later are skipped."""
    if kind == "content_block_delta":
        delta = data["delta"]
        dtype = delta.get("type")
        if dtype == "text_delta":
            return m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=data["index"], text_delta=delta["text"]))
        if dtype == "input_json_delta":
            return m.StreamEvent(
                content_block_delta=m.ContentBlockDelta(index=data["index"], input_json_delta=delta["partial_json"])
            )
        raise SluiceError(Reason.UPSTREAM_ERROR, f"unsupported delta type {dtype!r} from upstream")
    if kind == "message_start":
        msg = data["message"]
        _usage_into(usage, msg.get("usage"))
        shell = m.AssistantMessage(id=msg.get("id", ""), model=msg.get("model", ""), usage=usage)
        return m.StreamEvent(message_start=m.MessageStart(message=shell))
    if kind == "content_block_start":
        cb = data["content_block"]
        block = m.ContentBlock()
        if cb.get("type") == "text":
            block.text.text = cb.get("text", "")
        elif cb.get("type") == "tool_use":
            block.tool_use.id = cb.get("id", "")
            block.tool_use.name = cb.get("name", "")
            block.tool_use.input.SetInParent()
        else:
            raise SluiceError(Reason.UPSTREAM_ERROR, f"unsupported content block type {cb.get('type')!r} from upstream")
        return m.StreamEvent(content_block_start=m.ContentBlockStart(index=data["index"], content_block=block))
    if kind == "content_block_stop":
        return m.StreamEvent(content_block_stop=m.ContentBlockStop(index=data["index"]))
    if kind == "message_delta":
        _usage_into(usage, data.get("usage"))
        delta = data.get("delta") or {}
        return m.StreamEvent(
            message_delta=m.MessageDelta(
                stop_reason=delta.get("stop_reason") or "", stop_sequence=delta.get("stop_sequence") or "", usage=usage
            )
        )
    if kind == "message_stop":
        return m.StreamEvent(message_stop=m.MessageStop())
    return None
