"""The typed protobuf view of the Messages API, for gRPC clients of the
public GatewayService that send `params` and read typed messages.

Requests in typed form become the API's JSON here, and from then on travel
like any HTTP request. Answers are JSON first; the typed view is made from
it at the edge and holds what `sluice.llm.v1` has a type for (text,
tool_use, the classic usage fields). Everything else is in the JSON beside
it.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf import json_format, struct_pb2

from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import SluiceError
from sluice.wire import jsontext
from sluice.wire.events import Event

_ROLE = {m.ROLE_USER: "user", m.ROLE_ASSISTANT: "assistant"}
_TTL = {m.CacheControl.TTL_FIVE_MINUTES: "5m", m.CacheControl.TTL_ONE_HOUR: "1h"}
_TOOL_CHOICE = {m.ToolChoice.MODE_AUTO: "auto", m.ToolChoice.MODE_ANY: "any",
                m.ToolChoice.MODE_TOOL: "tool", m.ToolChoice.MODE_NONE: "none"}


# -- typed request -> JSON --------------------------------------------------------


def _struct(value: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict, integral numbers as ints: a Struct holds doubles
    only, and a typed client that wrote 17 meant 17, not 17.0."""
    return _ints(json_format.MessageToDict(value))


def _ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_ints(v) for v in value]
    return value


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
    out: dict[str, Any]
    if kind == "text":
        out = {"type": "text", "text": block.text.text}
    elif kind == "image":
        img = block.image
        if img.WhichOneof("source") == "base64":
            source = {"type": "base64", "media_type": img.base64.media_type, "data": img.base64.data}
        else:
            source = {"type": "url", "url": img.url}
        out = {"type": "image", "source": source}
    elif kind == "tool_use":
        out = {"type": "tool_use", "id": block.tool_use.id, "name": block.tool_use.name,
               "input": _struct(block.tool_use.input)}
    elif kind == "tool_result":
        tr = block.tool_result
        out = {"type": "tool_result", "tool_use_id": tr.tool_use_id, "content": [_block(b) for b in tr.content]}
        if tr.is_error:
            out["is_error"] = True
    else:
        # A block with no type set: sent as such, and refused by the API
        # (or by the codec) with the field named.
        out = {}
    cc = _cache_control(block)
    if cc:
        out["cache_control"] = cc
    return out


def params_json(params: m.MessageParams, count_tokens: bool = False) -> bytes:
    """The Messages API JSON for typed params (no `stream`; without
    max_tokens for count_tokens). Raises SluiceError(INVALID_REQUEST) for a
    sampling parameter that is not a finite number (JSON has no NaN)."""
    body: dict[str, Any] = {}
    if params.model:
        body["model"] = params.model
    if not count_tokens:
        body["max_tokens"] = params.max_tokens
    body["messages"] = [{"role": _ROLE.get(msg.role, ""), "content": [_block(b) for b in msg.content]}
                        for msg in params.messages]
    if params.system:
        body["system"] = [_block(b) for b in params.system]
    for name in ("temperature", "top_p", "top_k"):
        if params.HasField(name):
            value = getattr(params, name)
            if not math.isfinite(value):
                raise SluiceError.bad_request(name, "Input should be a finite number")
            body[name] = value
    if params.stop_sequences:
        body["stop_sequences"] = list(params.stop_sequences)
    if params.metadata.user_id:
        body["metadata"] = {"user_id": params.metadata.user_id}
    if params.tools:
        tools = []
        for tool in params.tools:
            t: dict[str, Any] = {"name": tool.name, "input_schema": _struct(tool.input_schema)}
            if tool.description:
                t["description"] = tool.description
            cc = _cache_control(tool)
            if cc:
                t["cache_control"] = cc
            tools.append(t)
        body["tools"] = tools
    if params.tool_choice.mode:
        choice: dict[str, Any] = {"type": _TOOL_CHOICE[params.tool_choice.mode]}
        if params.tool_choice.mode == m.ToolChoice.MODE_TOOL:
            choice["name"] = params.tool_choice.name
        if params.tool_choice.disable_parallel_tool_use:
            choice["disable_parallel_tool_use"] = True
        body["tool_choice"] = choice
    return jsontext.dumps(body).encode("utf-8")


# -- JSON answers -> typed view --------------------------------------------------------


def _i(value: Any) -> int:
    """An int64 a protobuf field can hold; 0 for anything else."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63 else 0


def _s(value: Any) -> str:
    """A string a protobuf field can hold: a lone surrogate from an upstream
    (valid JSON escape, not valid Unicode) becomes '?'."""
    text = value if isinstance(value, str) else str(value if value is not None else "")
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def usage_proto(usage: dict[str, Any]) -> m.Usage:
    """The usage object as the typed Usage (counters, cache breakdown,
    server tool counts, service tier, inference geography)."""
    out = m.Usage()
    for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
        value = usage.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            setattr(out, name, max(0, min(value, 2**63 - 1)))
    creation = usage.get("cache_creation")
    if isinstance(creation, dict):
        for name in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"):
            value = creation.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(out.cache_creation, name, max(0, min(value, 2**63 - 1)))
    tools = usage.get("server_tool_use")
    if isinstance(tools, dict):
        for name, value in tools.items():
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                out.server_tool_use[_s(name)] = min(value, 2**63 - 1)
    for name in ("service_tier", "inference_geo"):
        if isinstance(usage.get(name), str):
            setattr(out, name, _s(usage[name]))
    return out


def _block_proto(block: Any) -> m.ContentBlock | None:
    if not isinstance(block, dict):
        return None
    kind = block.get("type")
    if kind == "text":
        return m.ContentBlock(text=m.TextBlock(text=_s(block.get("text", ""))))
    if kind == "tool_use":
        out = m.ContentBlock(tool_use=m.ToolUseBlock(id=_s(block.get("id", "")), name=_s(block.get("name", ""))))
        value = block.get("input")
        out.tool_use.input.update(value if isinstance(value, dict) else {})
        return out
    return None


def message_proto(message: dict[str, Any]) -> m.AssistantMessage:
    """The typed view of a whole message (blocks without a typed form are left out)."""
    out = m.AssistantMessage(id=_s(message.get("id")), model=_s(message.get("model")),
                             stop_reason=_s(message.get("stop_reason")),
                             stop_sequence=_s(message.get("stop_sequence")))
    for block in message.get("content") or ():
        typed = _block_proto(block)
        if typed is not None:
            out.content.append(typed)
    out.usage.CopyFrom(usage_proto(message.get("usage") or {}))
    return out


def event_proto(event: Event) -> m.StreamEvent | None:
    """The typed view of one stream event; None for events and deltas it
    has no type for (thinking, citations, server tool blocks, new events)."""
    kind, view = event.type, event.view
    if kind == "content_block_delta":
        delta = view.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            return m.StreamEvent(content_block_delta=m.ContentBlockDelta(
                index=_i(view.get("index")), text_delta=_s(delta.get("text", ""))))
        if dtype == "input_json_delta":
            return m.StreamEvent(content_block_delta=m.ContentBlockDelta(
                index=_i(view.get("index")), input_json_delta=_s(delta.get("partial_json", ""))))
        return None
    if kind == "content_block_start":
        block = view.get("content_block") or {}
        typed = _block_proto({**block, "input": {}} if block.get("type") == "tool_use" else block)
        if typed is None:
            return None
        return m.StreamEvent(content_block_start=m.ContentBlockStart(index=_i(view.get("index")),
                                                                     content_block=typed))
    if kind == "content_block_stop":
        return m.StreamEvent(content_block_stop=m.ContentBlockStop(index=_i(view.get("index"))))
    if kind == "message_start":
        msg = view.get("message") or {}
        shell = m.AssistantMessage(id=_s(msg.get("id")), model=_s(msg.get("model")),
                                   usage=usage_proto(msg.get("usage") or {}))
        return m.StreamEvent(message_start=m.MessageStart(message=shell))
    if kind == "message_delta":
        delta = view.get("delta") or {}
        return m.StreamEvent(message_delta=m.MessageDelta(
            stop_reason=_s(delta.get("stop_reason")), stop_sequence=_s(delta.get("stop_sequence")),
            usage=usage_proto(view.get("usage") or {})))
    if kind == "message_stop":
        return m.StreamEvent(message_stop=m.MessageStop())
    if kind == "ping":
        return m.StreamEvent(ping=m.Ping())
    if kind == "error":
        error = view.get("error") or {}
        return m.StreamEvent(error=m.StreamError(type=_s(error.get("type")),
                                                 message=_s(error.get("message"))))
    return None
