"""Scripted answers: a test posts what the model should say, then names the
script in its prompt.

``POST /_sim/scripts`` with a script (JSON object) returns ``{"id": "<hex>"}``;
a request whose last user turn's text contains ``[[sim:script=<id>]]`` is
answered by it. Every field is optional:

- ``status`` (400-599), ``error`` ``{type, message}``: the API's error JSON
  at that status instead of an answer. ``headers``: response headers added
  to whatever the script answers (error or not).
- ``content``: content blocks exactly as the API returns them. Streamed,
  each becomes the events the Messages API streaming reference gives it
  (https://docs.claude.com/en/api/messages-streaming): ``text`` -> start
  ``{"type":"text","text":""}`` (with ``"citations":[]`` when the block
  has a citations list), one ``citations_delta`` per citation, then
  ``text_delta``\\ s; ``thinking`` -> start with empty thinking and
  signature, ``thinking_delta``\\ s, one ``signature_delta`` (the block's
  ``signature``, else one the simulator signs); ``tool_use`` /
  ``server_tool_use`` -> start with ``"input":{}``, then
  ``input_json_delta``\\ s of the input's JSON text, or of ``input_json``
  (a raw JSON string, sent verbatim); every other block -> a start with the
  whole block, then its stop. Not streamed, the same events are assembled
  into one message (`sluice.wire.assemble`), so tool input is the
  input_json text verbatim.
- ``chunk_chars`` (default 8): characters per text, thinking or JSON delta.
- ``stop_reason`` (default "end_turn"), ``stop_sequence``, ``stop_details``
  (put in message_delta's delta only when given), ``message`` (extra
  members of the message, in message_start), ``usage`` (merged over the
  computed usage: final message_delta / JSON message), ``start_usage``
  (merged into message_start's usage).
- ``events``: replaces ``content``: items ``{"event": type, "data": object}``
  (sent as ``event: type`` and the data's compact JSON),
  ``{"raw": "<SSE text>"}`` (written verbatim) or ``{"pause_ms": t}``. Not
  streamed: the message those events assemble to, or the error event's
  error at its status.
- ``pings`` ``{"every": N}``: a ping after every N content_block_delta events.
- ``pause`` ``{"after_events": k, "ms": t, "ping_every_ms": p | null}``:
  silence (or a ping every p ms) for t ms after the k-th event.
- ``error_after_events`` ``{"after": k, "error": {type, message}}``: an
  ``error`` event after the k-th event, then the stream ends.
- ``disconnect_after_events``: k: the socket is closed after the k-th event.
- ``ttft_ms`` / ``itl_ms``: pacing (default: prompt directives, then the
  simulator's settings): before the first event, between deltas.
- ``input_tokens``: the count /v1/messages/count_tokens answers.
- ``times``: answers that many requests, then is forgotten (default: until
  the process ends; at most MAX_SCRIPTS are kept, oldest dropped).

Events are counted from 1 over the script's own events (pings the
simulator adds for ``pings`` or ``pause`` do not count); k = 0 means before
the first. An unknown or forgotten id answers as if no script were named
(so a ``times: 1`` failure is followed by ordinary answers to retries).
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sluice.simulator.signing import Signer
from sluice.wire import jsontext
from sluice.wire.events import Event

MAX_SCRIPTS = 10_000
MARKER = re.compile(r"\[\[sim:script=([0-9a-fA-F]{1,64})\]\]")
_FIELDS = frozenset({
    "status", "error", "headers", "content", "chunk_chars", "stop_reason", "stop_sequence", "stop_details",
    "message", "usage", "start_usage", "pings", "pause", "error_after_events", "disconnect_after_events",
    "events", "times", "input_tokens", "ttft_ms", "itl_ms",
})


class ScriptError(ValueError):
    """A script that cannot be played; the message names the field."""


def _int(spec: dict[str, Any], name: str, low: int, high: int | None = None, where: str = "") -> int | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ScriptError(f"{where}{name}: must be an integer {bound}")
    return value


def _number(spec: dict[str, Any], name: str, where: str = "", positive: bool = False) -> float | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or (positive and value == 0):
        raise ScriptError(f"{where}{name}: must be a {'positive' if positive else 'non-negative'} number")
    return float(value)


def _object(spec: dict[str, Any], name: str, where: str = "") -> dict[str, Any] | None:
    value = spec.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ScriptError(f"{where}{name}: must be an object")
    return value


def _error(value: Any, where: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise ScriptError(f"{where}: must be an object")
    for name in ("type", "message"):
        if name in value and not isinstance(value[name], str):
            raise ScriptError(f"{where}.{name}: must be a string")


def parse_script(doc: Any) -> dict[str, Any]:
    """The script, checked; ScriptError naming the first bad field."""
    if not isinstance(doc, dict):
        raise ScriptError("a script must be a JSON object")
    unknown = sorted(set(doc) - _FIELDS)
    if unknown:
        raise ScriptError(f"{unknown[0]}: unknown script field")
    _int(doc, "status", 400, 599)
    _error(doc.get("error"), "error")
    headers = _object(doc, "headers") or {}
    for key, value in headers.items():
        if not isinstance(value, str) or not key:
            raise ScriptError(f"headers.{key}: must be a string")
    if doc.get("content") is not None and doc.get("events") is not None:
        raise ScriptError("events: give content or events, not both")
    if doc.get("content") is not None:
        if not isinstance(doc["content"], list):
            raise ScriptError("content: must be a list of content blocks")
        for j, block in enumerate(doc["content"]):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise ScriptError(f"content.{j}: must be an object with a string type")
            kind = block["type"]
            if kind == "text":
                if not isinstance(block.get("text"), str):
                    raise ScriptError(f"content.{j}.text: must be a string")
                if block.get("citations") is not None and not isinstance(block["citations"], list):
                    raise ScriptError(f"content.{j}.citations: must be a list")
            elif kind == "thinking":
                if not isinstance(block.get("thinking"), str):
                    raise ScriptError(f"content.{j}.thinking: must be a string")
                if block.get("signature") is not None and not isinstance(block["signature"], str):
                    raise ScriptError(f"content.{j}.signature: must be a string")
            elif (kind in ("tool_use", "server_tool_use") and "input_json" in block
                  and not isinstance(block["input_json"], str)):
                raise ScriptError(f"content.{j}.input_json: must be a string (raw JSON text)")
    if doc.get("events") is not None:
        if not isinstance(doc["events"], list):
            raise ScriptError("events: must be a list")
        for j, item in enumerate(doc["events"]):
            if not isinstance(item, dict):
                raise ScriptError(f"events.{j}: must be an object")
            if "event" in item:
                if not isinstance(item["event"], str) or not item["event"] or "\n" in item["event"]:
                    raise ScriptError(f"events.{j}.event: must be an event type")
                if "data" not in item:
                    raise ScriptError(f"events.{j}.data: required with event")
            elif "raw" in item:
                if not isinstance(item["raw"], str):
                    raise ScriptError(f"events.{j}.raw: must be a string")
            elif "pause_ms" in item:
                _number(item, "pause_ms", f"events.{j}.")
            else:
                raise ScriptError(f"events.{j}: needs event, raw or pause_ms")
    _int(doc, "chunk_chars", 1)
    for name in ("stop_reason", "stop_sequence"):
        if doc.get(name) is not None and not isinstance(doc[name], str):
            raise ScriptError(f"{name}: must be a string or null")
    for name in ("message", "usage", "start_usage"):
        _object(doc, name)
    pings = _object(doc, "pings")
    if pings is not None and _int(pings, "every", 1, where="pings.") is None:
        raise ScriptError("pings.every: required")
    pause = _object(doc, "pause")
    if pause is not None:
        if _int(pause, "after_events", 0, where="pause.") is None or _number(pause, "ms", "pause.") is None:
            raise ScriptError("pause: needs after_events and ms")
        _number(pause, "ping_every_ms", "pause.", positive=True)
    failure = _object(doc, "error_after_events")
    if failure is not None:
        if _int(failure, "after", 0, where="error_after_events.") is None:
            raise ScriptError("error_after_events.after: required")
        _error(failure.get("error"), "error_after_events.error")
    _int(doc, "disconnect_after_events", 0)
    _int(doc, "times", 1)
    _int(doc, "input_tokens", 0)
    _number(doc, "ttft_ms")
    _number(doc, "itl_ms")
    return doc


class ScriptStore:
    """Scripts by id, oldest dropped beyond `limit`."""

    def __init__(self, limit: int = MAX_SCRIPTS) -> None:
        self.limit = limit
        self._scripts: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._left: dict[str, int] = {}

    def add(self, script: dict[str, Any]) -> str:
        script_id = secrets.token_hex(8)
        self._scripts[script_id] = script
        if script.get("times") is not None:
            self._left[script_id] = script["times"]
        while len(self._scripts) > self.limit:
            old, _ = self._scripts.popitem(last=False)
            self._left.pop(old, None)
        return script_id

    def take(self, script_id: str | None) -> dict[str, Any] | None:
        """The script for one request (using up one of its `times`), or None."""
        if script_id is None:
            return None
        script = self._scripts.get(script_id)
        if script is None:
            return None
        if script_id in self._left:
            self._left[script_id] -= 1
            if self._left[script_id] <= 0:
                del self._left[script_id]
                del self._scripts[script_id]
        return script

    def __len__(self) -> int:
        return len(self._scripts)


def marker(text: str) -> str | None:
    """The script id named in a prompt's text (the last one named), lower case."""
    found = MARKER.findall(text)
    return found[-1].lower() if found else None


# -- scripts as events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    """One thing a script sends: an event, raw SSE text, or a pause."""

    event: Event | None = None
    raw: bytes | None = None
    pause_ms: float = 0.0

    @property
    def counts(self) -> bool:
        """An event (or raw text) the event counters count."""
        return self.event is not None or self.raw is not None

    @property
    def is_delta(self) -> bool:
        return self.event is not None and self.event.type == "content_block_delta"

    def sse(self) -> bytes:
        if self.event is not None:
            return self.event.sse()
        return self.raw or b""


def _chunks(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


def _delta(index: int, delta: dict[str, Any]) -> Step:
    return Step(Event.of({"type": "content_block_delta", "index": index, "delta": delta}))


def tool_input_json(block: dict[str, Any]) -> str:
    if isinstance(block.get("input_json"), str):
        return block["input_json"]
    return jsontext.dumps(block.get("input", {}))


def output_tokens(script: dict[str, Any]) -> int:
    """Estimated output tokens of a content script (at least 1)."""
    chars = 0
    for block in script.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            chars += len(block["text"])
        elif kind == "thinking":
            chars += len(block["thinking"])
        elif kind in ("tool_use", "server_tool_use"):
            chars += len(tool_input_json(block)) + len(str(block.get("name", "")))
        else:
            chars += len(jsontext.dumps(block))
    return max(1, (chars + 3) // 4)


def _block_steps(index: int, block: dict[str, Any], size: int, signer: Signer) -> list[Step]:
    kind = block["type"]
    steps: list[Step] = []
    if kind == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        start.update((k, v) for k, v in block.items() if k not in ("type", "text", "citations"))
        citations = block.get("citations")
        if isinstance(citations, list):
            start["citations"] = []
        steps.append(Step(Event.of({"type": "content_block_start", "index": index, "content_block": start})))
        for citation in citations if isinstance(citations, list) else ():
            steps.append(_delta(index, {"type": "citations_delta", "citation": citation}))
        steps += [_delta(index, {"type": "text_delta", "text": piece}) for piece in _chunks(block["text"], size)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        start.update((k, v) for k, v in block.items() if k not in ("type", "thinking", "signature"))
        steps.append(Step(Event.of({"type": "content_block_start", "index": index, "content_block": start})))
        steps += [_delta(index, {"type": "thinking_delta", "thinking": piece})
                  for piece in _chunks(block["thinking"], size)]
        signature = block.get("signature")
        if signature is None:
            signature = signer.sign(block["thinking"])
        steps.append(_delta(index, {"type": "signature_delta", "signature": signature}))
    elif kind in ("tool_use", "server_tool_use"):
        start = {k: ({} if k == "input" else v) for k, v in block.items() if k != "input_json"}
        start.setdefault("id", ("toolu_sim_" if kind == "tool_use" else "srvtoolu_sim_") + secrets.token_hex(8))
        start.setdefault("input", {})
        steps.append(Step(Event.of({"type": "content_block_start", "index": index, "content_block": start})))
        steps += [_delta(index, {"type": "input_json_delta", "partial_json": piece})
                  for piece in _chunks(tool_input_json(block), size)]
    else:
        steps.append(Step(Event.of({"type": "content_block_start", "index": index, "content_block": block})))
    steps.append(Step(Event.of({"type": "content_block_stop", "index": index})))
    return steps


def content_steps(script: dict[str, Any], *, message_id: str, model: str, usage: dict[str, Any],
                  signer: Signer) -> list[Step]:
    """The events of a content script's answer. `usage` is the computed
    usage (input split and output_tokens); the script's own is merged over it."""
    start_usage = {**usage, "output_tokens": 1, **(script.get("start_usage") or {})}
    final_usage = {**usage, **(script.get("usage") or {})}
    message: dict[str, Any] = {"id": message_id, "type": "message", "role": "assistant", "model": model,
                               "content": [], "stop_reason": None, "stop_sequence": None, "usage": start_usage}
    message.update(script.get("message") or {})
    steps = [Step(Event.of({"type": "message_start", "message": message}))]
    size = script.get("chunk_chars") or 8
    for index, block in enumerate(script.get("content") or ()):
        steps += _block_steps(index, block, size, signer)
    delta: dict[str, Any] = {"stop_reason": script.get("stop_reason") or "end_turn",
                             "stop_sequence": script.get("stop_sequence")}
    if "stop_details" in script:
        delta["stop_details"] = script["stop_details"]
    steps.append(Step(Event.of({"type": "message_delta", "delta": delta, "usage": final_usage})))
    steps.append(Step(Event.of({"type": "message_stop"})))
    return steps


def event_steps(script: dict[str, Any]) -> list[Step]:
    """The steps of an `events` script, exactly as written."""
    steps = []
    for item in script["events"]:
        if "event" in item:
            steps.append(Step(Event(item["event"], jsontext.dumps(item["data"]).encode("utf-8"))))
        elif "raw" in item:
            steps.append(Step(raw=item["raw"].encode("utf-8", "surrogatepass")))
        else:
            steps.append(Step(pause_ms=float(item["pause_ms"])))
    return steps
