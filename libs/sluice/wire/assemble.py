"""A whole message from its stream events, with the rules of the SDKs' own
stream accumulators (anthropic-sdk-python `lib/streaming/_messages.py`).

Sluice always streams from the upstream; a client that asked for a plain
JSON answer gets the message these events add up to:

- message_start gives the message shell;
- content_block_start appends a block; text_delta, thinking_delta,
  signature_delta, citations_delta and input_json_delta (for tool_use,
  server_tool_use and any block that streams its input) apply to it; delta
  types it does not know are left out of the whole message (they still reach
  streaming clients unchanged);
- message_delta sets the delta's fields (stop_reason, stop_sequence,
  stop_details, container, ...) on the message, merges its cumulative usage,
  and carries other members (e.g. context_management) over;
- message_stop completes it.

Every value no event changed keeps the exact JSON text the upstream sent
(a tool input is the concatenated partial_json, verbatim). A tool input cut
off by max_tokens is not JSON: it becomes what can be parsed of it, as the
SDKs do, and the answer is still a 200 with stop_reason "max_tokens".
"""

from __future__ import annotations

from typing import Any

import jiter

from sluice.wire import jsontext
from sluice.wire.events import Event, merge_usage

# Members of message_delta that are not carried over to the message.
_DELTA_ENVELOPE = frozenset({"type", "delta", "usage"})


class StreamProtocolError(ValueError):
    """The events broke the Messages API's stream rules."""


def _exact(value: Any) -> bool:
    """Whether re-encoding `value` gives back its exact JSON text: no number
    that is not an int (a double may not print as it was written, and a view
    reads integers beyond 64 bits as doubles). Most events qualify, so most
    are written from their view without finding spans in their text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float):
            return False
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


class _Block:
    __slots__ = ("source", "view", "changed", "json_parts", "citations", "_raw")

    def __init__(self, source: str, view: dict[str, Any]) -> None:
        self.source = source  # the content_block_start event's data, as the upstream wrote it
        self.view = view
        self._raw: str | None = None
        self.changed: dict[str, str] = {}  # member -> new JSON text
        self.json_parts: list[str] | None = None
        self.citations: list[str] | None = None  # JSON texts of citations

    def add_string(self, key: str, piece: str, replace: bool = False) -> None:
        current = "" if replace else str(self.view.get(key) or "")
        self.view[key] = current + piece
        self.changed[key] = ""  # rendered at the end from view

    @property
    def raw(self) -> str:
        """The content_block as the upstream wrote it."""
        if self._raw is None:
            start, end = _span(self.source, ("content_block",), "content_block_start without a content_block")
            self._raw = self.source[start:end]
        return self._raw

    def render(self) -> str:
        if self.json_parts is not None:
            self.changed["input"] = _tool_input("".join(self.json_parts), self)
        if self.citations is not None:
            earlier = self.view.get("citations") or []
            texts = [jsontext.dumps(c) for c in earlier] if isinstance(earlier, list) else []
            self.changed["citations"] = "[" + ",".join(texts + self.citations) + "]"
        overrides = {k: (v or jsontext.dumps(self.view[k])) for k, v in self.changed.items()}
        if _exact(self.view):  # the usual text or thinking block: from its view
            return _from_view(self.view, overrides)
        if not self.changed:
            return self.raw
        return _render_object(self.raw, overrides)


def _tool_input(joined: str, block: _Block) -> str:
    """The input's JSON text: the streamed text when it is whole JSON, the
    parseable part of it when the stream was cut short, the start's input
    when nothing streamed."""
    if not joined.strip():
        if _exact(block.view.get("input")):
            return jsontext.dumps(block.view.get("input", {}))
        try:
            start, end = jsontext.value_span(block.raw, ("input",))
            return block.raw[start:end]
        except KeyError:
            return "{}"
    try:
        jsontext.loads(joined)
        return joined
    except jsontext.JsonTextError:
        pass
    try:
        partial = jiter.from_json(joined.encode("utf-8"), partial_mode="trailing-strings")
    except ValueError:
        partial = {}
    return jsontext.dumps(partial if isinstance(partial, dict) else {})


def _from_view(view: dict[str, Any], overrides: dict[str, str]) -> str:
    """The object `view` (exact, see `_exact`) with `overrides` (member ->
    JSON text) replacing or following its members."""
    parts = [f"{jsontext.dumps(k)}:{overrides[k] if k in overrides else jsontext.dumps(v)}" for k, v in view.items()]
    parts += [f"{jsontext.dumps(k)}:{v}" for k, v in overrides.items() if k not in view]
    return "{" + ",".join(parts) + "}"


def _render_object(raw: str, overrides: dict[str, str]) -> str:
    """The JSON object `raw` with the members in `overrides` (member -> JSON
    text) replaced or, when absent, appended; all else verbatim."""
    members, _ = jsontext.object_members(raw)
    seen: set[str] = set()
    parts: list[str] = []
    last = {m.key: i for i, m in enumerate(members)}
    for i, member in enumerate(members):
        if last[member.key] != i:
            continue  # a duplicate key: the last one is the value
        if member.key in overrides:
            parts.append(f"{jsontext.dumps(member.key)}:{overrides[member.key]}")
        else:
            parts.append(raw[member.start:member.end])
        seen.add(member.key)
    parts += [f"{jsontext.dumps(k)}:{v}" for k, v in overrides.items() if k not in seen]
    return "{" + ",".join(parts) + "}"


class MessageAssembler:
    """Feeds on events; `json()` is the whole message once `done`."""

    def __init__(self) -> None:
        self.done = False
        self._message: dict[str, Any] | None = None
        self._raw_message = ""  # the message as written, when its view is not exact
        self._blocks: list[_Block] = []
        self._overrides: dict[str, str] = {}  # message member -> JSON text
        self._usage: dict[str, Any] = {}

    def feed(self, event: Event) -> None:
        """Applies one event. Raises StreamProtocolError when events come
        out of order (a block delta before its start, a block started out of
        sequence, anything before message_start)."""
        kind = event.type
        if kind in ("ping", "error"):
            return
        if self._message is None:
            if kind != "message_start":
                raise StreamProtocolError(f"{kind} before message_start")
            message = event.view.get("message")
            if not isinstance(message, dict):
                raise StreamProtocolError("message_start without a message")
            self._message = message
            if not _exact(message):
                text = event.data.decode("utf-8")
                start, end = _span(text, ("message",), "message_start without a message")
                self._raw_message = text[start:end]
            else:
                self._raw_message = ""
            self._usage = dict(message.get("usage") or {})
            return
        view = event.view
        if kind == "content_block_start":
            if view.get("index") != len(self._blocks):
                raise StreamProtocolError(f"content block {view.get('index')} started out of order")
            block = view.get("content_block")
            if not isinstance(block, dict):
                raise StreamProtocolError("content_block_start without a content_block")
            self._blocks.append(_Block(event.data.decode("utf-8"), dict(block)))
        elif kind == "content_block_delta":
            self._delta(view)
        elif kind == "message_delta":
            # The delta's members and any others (context_management, ...)
            # go onto the message with the exact text the upstream wrote.
            delta = view.get("delta")
            if _exact(view):
                if isinstance(delta, dict):
                    self._overrides.update((k, jsontext.dumps(v)) for k, v in delta.items())
                self._overrides.update((k, jsontext.dumps(v)) for k, v in view.items() if k not in _DELTA_ENVELOPE)
            else:
                text = event.data.decode("utf-8")
                for member in jsontext.object_members(text)[0]:
                    if member.key == "delta" and isinstance(member.value, dict):
                        for inner in jsontext.object_members(text, member.value_start)[0]:
                            self._overrides[inner.key] = text[inner.value_start:inner.end]
                    elif member.key not in _DELTA_ENVELOPE:
                        self._overrides[member.key] = text[member.value_start:member.end]
            self._usage = merge_usage(self._usage, view.get("usage"))
        elif kind == "message_stop":
            self.done = True

    def _delta(self, view: dict[str, Any]) -> None:
        index = view.get("index")
        if not isinstance(index, int) or not 0 <= index < len(self._blocks):
            raise StreamProtocolError(f"delta for content block {index} before its start")
        block = self._blocks[index]
        delta = view.get("delta") or {}
        dtype = delta.get("type")
        if dtype == "text_delta":
            block.add_string("text", str(delta.get("text", "")))
        elif dtype == "thinking_delta":
            block.add_string("thinking", str(delta.get("thinking", "")))
        elif dtype == "signature_delta":
            block.add_string("signature", str(delta.get("signature", "")), replace=True)
        elif dtype == "input_json_delta":
            if block.json_parts is None:
                block.json_parts = []
            block.json_parts.append(str(delta.get("partial_json", "")))
        elif dtype == "citations_delta":
            if block.citations is None:
                block.citations = []
            block.citations.append(jsontext.dumps(delta.get("citation")))

    @property
    def usage(self) -> dict[str, Any]:
        """The usage so far: message_start's, merged with every message_delta's."""
        return self._usage

    def stop_reason(self) -> str | None:
        value = self._overrides.get("stop_reason")
        return jsontext.loads(value) if value else None

    def json(self) -> bytes:
        """The whole message as JSON. Raises StreamProtocolError before message_start."""
        if self._message is None:
            raise StreamProtocolError("no message_start")
        overrides = dict(self._overrides)
        overrides["content"] = "[" + ",".join(block.render() for block in self._blocks) + "]"
        overrides["usage"] = jsontext.dumps(self._usage)
        if self._raw_message:
            return _render_object(self._raw_message, overrides).encode("utf-8")
        return _from_view(self._message, overrides).encode("utf-8")


def _span(text: str, path: jsontext.Path, problem: str) -> tuple[int, int]:
    try:
        return jsontext.value_span(text, path)
    except (KeyError, jsontext.JsonTextError, ValueError):
        raise StreamProtocolError(problem) from None
