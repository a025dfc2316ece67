"""AWS event-stream framing, as Bedrock's ``InvokeModelWithResponseStream``
answers (``content-type: application/vnd.amazon.eventstream``).

A message (the framing botocore's ``botocore.eventstream`` decodes, the
same for every AWS streaming API):

- prelude: total length (uint32, big endian, the whole message), headers
  length (uint32), CRC32 of those 8 bytes (uint32);
- headers: each a name length (uint8), the name (ASCII), a value type (7 =
  string), the value length (uint16) and the value (UTF-8);
- the payload;
- CRC32 of everything before it (prelude, prelude CRC, headers, payload).

Bedrock's stream (botocore's ``bedrock-runtime`` model, shape
``ResponseStream``): each Messages event is an ``event`` message,
``:event-type: chunk``, payload ``{"bytes": "<base64 of the event's
JSON>"}``. A failure after the stream began is an ``exception`` message,
``:exception-type`` one of the shape's members (``throttlingException``,
``internalServerException``, ``serviceUnavailableException``,
``modelStreamErrorException``, ...), payload ``{"message": ...}``.

`SseToEventStream` turns the SSE bytes the simulator writes (its own events
and scripts' raw SSE text) into those messages, so every answer path plays
the same on the Bedrock wire as on the Anthropic one.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct

_STRING = 7
# A message's length is a uint32; botocore refuses more than 16 MiB.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Messages API error type -> ResponseStream exception member. CHOSEN: which
# member Bedrock uses for a model's mid-stream `overloaded_error` is not
# documented; serviceUnavailableException matches the 529 -> 503 mapping of
# errors before the stream.
STREAM_EXCEPTIONS = {
    "overloaded_error": "serviceUnavailableException",
    "rate_limit_error": "throttlingException",
    "api_error": "internalServerException",
    "timeout_error": "modelTimeoutException",
    "invalid_request_error": "validationException",
}
MODEL_STREAM_ERROR = "modelStreamErrorException"


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message: string-valued `headers`, then `payload`.
    ValueError for a header name over 255 bytes, a value over 65535 bytes,
    or a message over MAX_MESSAGE_BYTES."""
    encoded = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode("ascii"), value.encode("utf-8")
        if len(raw_name) > 255 or len(raw_value) > 0xFFFF:
            raise ValueError(f"event-stream header {name!r} is too long")
        encoded += struct.pack(">B", len(raw_name)) + raw_name
        encoded += struct.pack(">BH", _STRING, len(raw_value)) + raw_value
    total = 12 + len(encoded) + len(payload) + 4
    if total > MAX_MESSAGE_BYTES:
        raise ValueError(f"event-stream message of {total} bytes is over {MAX_MESSAGE_BYTES}")
    prelude = struct.pack(">II", total, len(encoded))
    message = prelude + struct.pack(">I", binascii.crc32(prelude)) + bytes(encoded) + payload
    return message + struct.pack(">I", binascii.crc32(message))


def chunk(event_json: bytes) -> bytes:
    """A Bedrock ``chunk`` event carrying one Messages event's JSON text."""
    payload = json.dumps({"bytes": base64.b64encode(event_json).decode("ascii")}).encode()
    return encode_message({":event-type": "chunk", ":content-type": "application/json",
                           ":message-type": "event"}, payload)


def exception(kind: str, message: str, **extra: object) -> bytes:
    """A Bedrock stream exception: `kind` is a ResponseStream member name
    (``throttlingException``, ...), `extra` more members of its payload."""
    payload = json.dumps({"message": message, **extra}).encode()
    return encode_message({":exception-type": kind, ":content-type": "application/json",
                           ":message-type": "exception"}, payload)


def error_event(error: object) -> bytes:
    """The exception message for a Messages ``error`` event's `error` object."""
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "api_error")
    message = str(error.get("message") or "")
    member = STREAM_EXCEPTIONS.get(kind)
    if member is not None:
        return exception(member, message)
    return exception(MODEL_STREAM_ERROR, message, originalMessage=message)


class SseToEventStream:
    """Re-frames SSE bytes as Bedrock event-stream messages, event by event
    (SSE framing as `sluice.wire.events.sse_events` reads it: ``event:`` /
    ``data:`` lines, a blank line ends an event, LF or CRLF). ``error``
    events become exception messages; an event without data, or whose data
    is not a JSON object, is passed on as its data bytes (scripts' raw text
    may be deliberately broken)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, sse: bytes) -> bytes:
        """The event-stream bytes of the events `sse` completes."""
        self._buffer += sse
        if b"\r" in self._buffer:
            self._buffer = self._buffer.replace(b"\r\n", b"\n")
        out = bytearray()
        while True:
            end = self._buffer.find(b"\n\n")
            if end < 0:
                return bytes(out)
            block, self._buffer = self._buffer[:end], self._buffer[end + 2:]
            out += self._message(block)

    def _message(self, block: bytes) -> bytes:
        kind, data = "", []
        for line in block.split(b"\n"):
            if line.startswith(b"data:"):
                data.append(line[5:].removeprefix(b" "))
            elif line.startswith(b"event:"):
                kind = line[6:].strip().decode("utf-8", "replace")
        if not data:
            return b""  # a comment or an event line alone: nothing to carry
        text = b"\n".join(data)
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict) and (kind or value.get("type")) == "error":
            return error_event(value.get("error"))
        return chunk(text)
