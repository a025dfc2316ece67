"""Messages API stream events: SSE framing, typed views, and the few events
Sluice writes itself.

An `Event` is the event type and its data as JSON text, as the upstream sent
it; `view` parses the data on first use. Events are relayed by writing the
same bytes back out (`sse`), so an event type, delta type or field that no
stage reads reaches the client unchanged. Event shapes follow the Messages
API streaming reference: message_start, content_block_start /
content_block_delta / content_block_stop per block, message_delta (stop
reason and cumulative usage), message_stop; `ping` anywhere; `error` after
the stream began.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from sluice.wire import jsontext

MESSAGE_START = "message_start"
CONTENT_BLOCK_START = "content_block_start"
CONTENT_BLOCK_DELTA = "content_block_delta"
CONTENT_BLOCK_STOP = "content_block_stop"
MESSAGE_DELTA = "message_delta"
MESSAGE_STOP = "message_stop"
PING = "ping"
ERROR = "error"


class Event:
    """One stream event: `type` and `data` (the JSON text, bytes)."""

    __slots__ = ("type", "data", "_view")

    def __init__(self, type: str, data: bytes, view: dict[str, Any] | None = None) -> None:
        self.type = type
        self.data = data
        self._view = view

    @classmethod
    def of(cls, data: dict[str, Any]) -> Event:
        """An event Sluice writes itself, from its data object."""
        return cls(data["type"], jsontext.dumps(data).encode("utf-8"), data)

    @property
    def view(self) -> dict[str, Any]:
        """The data, parsed (once). Raises ValueError for data that is not a
        JSON object."""
        if self._view is None:
            value = jsontext.read(self.data)
            if not isinstance(value, dict):
                raise ValueError(f"{self.type} event data is not a JSON object")
            self._view = value
        return self._view

    def sse(self) -> bytes:
        """The event as SSE: ``event: <type>`` and ``data: <json>`` lines."""
        return b"event: " + self.type.encode() + b"\ndata: " + self.data + b"\n\n"

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.data[:80]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.type == self.type and other.data == self.data

    __hash__ = None  # type: ignore[assignment]  # unhashable, as a mutable value


async def sse_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """The events of an SSE byte stream (the framing of the WHATWG
    server-sent events spec as the Messages API uses it: ``event:`` and
    ``data:`` lines, events ended by a blank line, LF or CRLF line ends,
    ``:`` comments). Data is not parsed unless the ``event:`` line is missing.
    Raises ValueError when the stream ends inside an event."""
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
            event = _frame(block)
            if event is not None:
                yield event
    if buffer.strip():
        raise ValueError("stream ended inside an event")


def _frame(block: bytes) -> Event | None:
    if block.startswith(b"event: "):  # the usual shape: one event line, one data line
        nl = block.find(b"\n")
        if nl > 0 and block.startswith(b"data: ", nl + 1) and block.find(b"\n", nl + 1) < 0:
            return Event(block[7:nl].strip().decode("utf-8", "replace"), block[nl + 7:])
    kind, data_lines = "", []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            data_lines.append(line[5:].removeprefix(b" "))
        elif line.startswith(b"event:"):
            kind = line[6:].strip().decode("utf-8", "replace")
    if not data_lines:
        return None
    data = b"\n".join(data_lines)
    if kind:
        return Event(kind, data)
    event = Event("", data)
    event.type = str(event.view.get("type", ""))
    return event


# -- events Sluice writes ----------------------------------------------------------


def ping() -> Event:
    return Event(PING, b'{"type":"ping"}')


def error(error_type: str, message: str) -> Event:
    """The error event that ends a stream which failed after it began."""
    return Event.of({"type": ERROR, "error": {"type": error_type, "message": message}})


def text_delta(index: int, text: str) -> Event:
    return Event.of({"type": CONTENT_BLOCK_DELTA, "index": index, "delta": {"type": "text_delta", "text": text}})


def input_json_delta(index: int, partial_json: str) -> Event:
    return Event.of({"type": CONTENT_BLOCK_DELTA, "index": index,
                     "delta": {"type": "input_json_delta", "partial_json": partial_json}})


def content_block_stop(index: int) -> Event:
    return Event.of({"type": CONTENT_BLOCK_STOP, "index": index})


def message_delta(stop_reason: str, usage: dict[str, Any], stop_sequence: str | None = None) -> Event:
    return Event.of({"type": MESSAGE_DELTA, "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                     "usage": usage})


def message_stop() -> Event:
    return Event(MESSAGE_STOP, b'{"type":"message_stop"}')


# -- declared edits of upstream events ----------------------------------------------


def with_index(event: Event, index: int) -> Event:
    """The event with its block `index` changed (the output filter dropped
    a block before it); every other byte unchanged."""
    text = jsontext.replace_values(event.data.decode("utf-8"), [(("index",), index)])
    return Event(event.type, text.encode("utf-8"))


def with_message_model(event: Event, model: str) -> Event:
    """message_start with `message.model` set to `model` (the catalog id of
    the model that served); every other byte unchanged."""
    if event.view.get("message", {}).get("model") == model:
        return event
    try:
        text = jsontext.replace_values(event.data.decode("utf-8"), [(("message", "model"), model)])
    except KeyError:  # no model member: add none
        return event
    return Event(event.type, text.encode("utf-8"))


# -- usage ----------------------------------------------------------------------------


def merge_usage(current: dict[str, Any], update: Any) -> dict[str, Any]:
    """`current` usage with the fields `update` reports replacing it:
    message_delta usage is cumulative, and fields it leaves out (or null)
    keep their earlier value (the Messages API streaming reference)."""
    if not isinstance(update, dict):
        return current
    merged = dict(current)
    for key, value in update.items():
        if value is not None:
            merged[key] = value
    return merged
