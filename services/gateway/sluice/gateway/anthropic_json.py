"""Anthropic Messages API JSON <-> Sluice protos, for the HTTP facade.

Parsing is strict and names the offending field by its JSON path; semantic
checks shared with the gRPC API live in `validation`. Rendering produces
exactly the JSON the `anthropic` SDK parses, with a fast path for text deltas,
which are most of a stream.
"""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import SluiceError

_ROLES = {"user": m.ROLE_USER, "assistant": m.ROLE_ASSISTANT}
_ROLE_NAMES = {v: k for k, v in _ROLES.items()}
_TTLS = {"5m": m.CacheControl.TTL_FIVE_MINUTES, "1h": m.CacheControl.TTL_ONE_HOUR}
_TOOL_CHOICES = {"auto": m.ToolChoice.MODE_AUTO, "any": m.ToolChoice.MODE_ANY,
                 "tool": m.ToolChoice.MODE_TOOL, "none": m.ToolChoice.MODE_NONE}
_TOP_LEVEL = {"model", "max_tokens", "messages", "system", "temperature", "top_p", "top_k",
              "stop_sequences", "metadata", "tools", "tool_choice", "stream"}
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _bad(path: str, description: str) -> SluiceError:
    return SluiceError.bad_request(path, description)


def _type_name(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}.get(type(value), type(value).__name__)


def _expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float, (int, float))):
        raise _bad(path, f"Input should be a valid {what}, got {_type_name(value)}")
    return value


def _no_extra(obj: dict, allowed: set[str], path: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _bad(f"{path}.{key}" if path else key, "Extra inputs are not permitted")


def _cache_control(obj: dict, block: Any, path: str) -> None:
    cc = obj.get("cache_control")
    if cc is None:
        return
    _expect(cc, dict, f"{path}.cache_control", "object")
    _no_extra(cc, {"type", "ttl"}, f"{path}.cache_control")
    if cc.get("type") != "ephemeral":
        raise _bad(f"{path}.cache_control.type", "Input should be 'ephemeral'")
    ttl = cc.get("ttl", "5m")
    if ttl not in _TTLS:
        raise _bad(f"{path}.cache_control.ttl", "Input should be '5m' or '1h'")
    block.cache_control.ttl = _TTLS[ttl]


def _parse_block(obj: Any, path: str, allowed_types: tuple[str, ...]) -> m.ContentBlock:
    _expect(obj, dict, path, "object")
    kind = obj.get("type")
    if kind not in allowed_types:
        raise _bad(f"{path}.type", f"Input should be one of {', '.join(repr(t) for t in allowed_types)}")
    block = m.ContentBlock()
    if kind == "text":
        _no_extra(obj, {"type", "text", "cache_control", "citations"}, path)
        block.text.text = _expect(obj.get("text"), str, f"{path}.text", "string")
    elif kind == "image":
        _no_extra(obj, {"type", "source", "cache_control"}, path)
        source = _expect(obj.get("source"), dict, f"{path}.source", "object")
        if source.get("type") == "base64":
            _no_extra(source, {"type", "media_type", "data"}, f"{path}.source")
            block.image.base64.media_type = _expect(source.get("media_type"), str, f"{path}.source.media_type", "string")
            block.image.base64.data = _expect(source.get("data"), str, f"{path}.source.data", "string")
        elif source.get("type") == "url":
            _no_extra(source, {"type", "url"}, f"{path}.source")
            block.image.url = _expect(source.get("url"), str, f"{path}.source.url", "string")
        else:
            raise _bad(f"{path}.source.type", "Input should be 'base64' or 'url'")
    elif kind == "tool_use":
        _no_extra(obj, {"type", "id", "name", "input", "cache_control"}, path)
        block.tool_use.id = _expect(obj.get("id"), str, f"{path}.id", "string")
        block.tool_use.name = _expect(obj.get("name"), str, f"{path}.name", "string")
        block.tool_use.input.update(_expect(obj.get("input", {}), dict, f"{path}.input", "object"))
    elif kind == "tool_result":
        _no_extra(obj, {"type", "tool_use_id", "content", "is_error", "cache_control"}, path)
        block.tool_result.tool_use_id = _expect(obj.get("tool_use_id"), str, f"{path}.tool_use_id", "string")
        content = obj.get("content", [])
        if isinstance(content, str):
            block.tool_result.content.add().text.text = content
        else:
            for j, inner in enumerate(_expect(content, list, f"{path}.content", "list")):
                block.tool_result.content.append(_parse_block(inner, f"{path}.content.{j}", ("text", "image")))
        block.tool_result.is_error = bool(_expect(obj.get("is_error", False), bool, f"{path}.is_error", "boolean"))
    _cache_control(obj, block, path)
    return block


def _parse_content(value: Any, path: str) -> list[m.ContentBlock]:
    if isinstance(value, str):
        block = m.ContentBlock()
        block.text.text = value
        return [block]
    items = _expect(value, list, path, "list or string")
    return [_parse_block(b, f"{path}.{j}", ("text", "image", "tool_use", "tool_result")) for j, b in enumerate(items)]


def parse_request(body: Any) -> tuple[m.MessageParams, bool]:
    """The request proto and whether the client asked for a stream."""
    _expect(body, dict, "(body)", "JSON object")
    _no_extra(body, _TOP_LEVEL, "")
    params = m.MessageParams()
    if "model" in body:
        params.model = _expect(body["model"], str, "model", "string")
    if "max_tokens" not in body:
        raise _bad("max_tokens", "Field required")
    params.max_tokens = _expect(body["max_tokens"], int, "max_tokens", "integer")
    if "messages" not in body:
        raise _bad("messages", "Field required")
    for i, msg in enumerate(_expect(body["messages"], list, "messages", "list")):
        path = f"messages.{i}"
        _expect(msg, dict, path, "object")
        _no_extra(msg, {"role", "content"}, path)
        role = msg.get("role")
        if role not in _ROLES:
            raise _bad(f"{path}.role", "Input should be 'user' or 'assistant'")
        if "content" not in msg:
            raise _bad(f"{path}.content", "Field required")
        params.messages.add(role=_ROLES[role], content=_parse_content(msg["content"], f"{path}.content"))
    if "system" in body:
        system = body["system"]
        if isinstance(system, str):
            if system:
                params.system.add().text.text = system
        else:
            for j, b in enumerate(_expect(system, list, "system", "list or string")):
                params.system.append(_parse_block(b, f"system.{j}", ("text",)))
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            setattr(params, name, float(_expect(body[name], (int, float), name, "number")))
    if body.get("top_k") is not None:
        params.top_k = _expect(body["top_k"], int, "top_k", "integer")
    if body.get("stop_sequences") is not None:
        for j, seq in enumerate(_expect(body["stop_sequences"], list, "stop_sequences", "list")):
            params.stop_sequences.append(_expect(seq, str, f"stop_sequences.{j}", "string"))
    if body.get("metadata") is not None:
        meta = _expect(body["metadata"], dict, "metadata", "object")
        _no_extra(meta, {"user_id"}, "metadata")
        if meta.get("user_id") is not None:
            params.metadata.user_id = _expect(meta["user_id"], str, "metadata.user_id", "string")
    if body.get("tools") is not None:
        for j, tool in enumerate(_expect(body["tools"], list, "tools", "list")):
            path = f"tools.{j}"
            _expect(tool, dict, path, "object")
            _no_extra(tool, {"name", "description", "input_schema", "cache_control", "type"}, path)
            t = params.tools.add(name=_expect(tool.get("name"), str, f"{path}.name", "string"))
            if tool.get("description") is not None:
                t.description = _expect(tool["description"], str, f"{path}.description", "string")
            t.input_schema.update(_expect(tool.get("input_schema"), dict, f"{path}.input_schema", "object"))
            _cache_control(tool, t, path)
    if body.get("tool_choice") is not None:
        choice = _expect(body["tool_choice"], dict, "tool_choice", "object")
        _no_extra(choice, {"type", "name", "disable_parallel_tool_use"}, "tool_choice")
        if choice.get("type") not in _TOOL_CHOICES:
            raise _bad("tool_choice.type", "Input should be 'auto', 'any', 'tool' or 'none'")
        params.tool_choice.mode = _TOOL_CHOICES[choice["type"]]
        if choice.get("name") is not None:
            params.tool_choice.name = _expect(choice["name"], str, "tool_choice.name", "string")
        params.tool_choice.disable_parallel_tool_use = bool(choice.get("disable_parallel_tool_use", False))
    stream = body.get("stream", False)
    _expect(stream, bool, "stream", "boolean")
    return params, stream


# -- rendering -------------------------------------------------------------------


def _usage(u: m.Usage) -> dict[str, int]:
    return {"input_tokens": u.input_tokens, "cache_creation_input_tokens": u.cache_creation_input_tokens,
            "cache_read_input_tokens": u.cache_read_input_tokens, "output_tokens": u.output_tokens}


def _block_json(block: m.ContentBlock) -> dict[str, Any]:
    kind = block.WhichOneof("block")
    if kind == "text":
        return {"type": "text", "text": block.text.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.tool_use.id, "name": block.tool_use.name,
                "input": json_format.MessageToDict(block.tool_use.input)}
    raise ValueError(f"a response cannot hold a {kind} block")


def message_json(msg: m.AssistantMessage) -> dict[str, Any]:
    return {
        "id": msg.id, "type": "message", "role": "assistant", "model": msg.model,
        "content": [_block_json(b) for b in msg.content],
        "stop_reason": msg.stop_reason or None, "stop_sequence": msg.stop_sequence or None,
        "usage": _usage(msg.usage),
    }


def render_message(msg: m.AssistantMessage) -> bytes:
    return _dumps(message_json(msg)).encode()


def render_event(event: m.StreamEvent) -> bytes:
    """One server-sent event, `event: <type>` and `data: <json>`."""
    kind = event.WhichOneof("event")
    if kind == "content_block_delta":
        d = event.content_block_delta
        if d.WhichOneof("delta") == "text_delta":
            return (b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
                    b'"delta":{"type":"text_delta","text":%s}}\n\n' % (d.index, _dumps(d.text_delta).encode()))
        data: dict[str, Any] = {"type": kind, "index": d.index,
                                "delta": {"type": "input_json_delta", "partial_json": d.input_json_delta}}
    elif kind == "message_start":
        shell = message_json(event.message_start.message)
        shell["content"] = []
        data = {"type": kind, "message": shell}
    elif kind == "content_block_start":
        s = event.content_block_start
        block = _block_json(s.content_block)
        data = {"type": kind, "index": s.index, "content_block": block}
    elif kind == "content_block_stop":
        data = {"type": kind, "index": event.content_block_stop.index}
    elif kind == "message_delta":
        md = event.message_delta
        data = {"type": kind, "delta": {"stop_reason": md.stop_reason or None, "stop_sequence": md.stop_sequence or None},
                "usage": _usage(md.usage)}
    elif kind == "message_stop":
        data = {"type": kind}
    elif kind == "ping":
        data = {"type": kind}
    elif kind == "error":
        data = {"type": "error", "error": {"type": event.error.type, "message": event.error.message}}
    else:
        raise ValueError(f"unknown stream event {kind!r}")
    return b"event: %s\ndata: %s\n\n" % (data["type"].encode(), _dumps(data).encode())


def render_error_event(error_type: str, message: str) -> bytes:
    return render_event(m.StreamEvent(error=m.StreamError(type=error_type, message=message)))
