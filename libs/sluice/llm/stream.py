"""Turns a stream of Messages API events into the complete message, and back."""

from __future__ import annotations

import json

from google.protobuf import struct_pb2

from sluice.llm.v1 import messages_pb2 as m


class StreamProtocolError(ValueError):
    """The event sequence broke the Messages API stream rules."""


class MessageAssembler:
    """Feeds on StreamEvents; `message` is complete once message_stop arrived."""

    def __init__(self) -> None:
        self.message = m.AssistantMessage()
        self.done = False
        self._json_parts: dict[int, list[str]] = {}

    def feed(self, event: m.StreamEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "content_block_delta":
            delta = event.content_block_delta
            block = self._block(delta.index)
            which = delta.WhichOneof("delta")
            if which == "text_delta":
                block.text.text += delta.text_delta
            elif which == "input_json_delta":
                self._json_parts.setdefault(delta.index, []).append(delta.input_json_delta)
        elif kind == "message_start":
            self.message.CopyFrom(event.message_start.message)
        elif kind == "content_block_start":
            start = event.content_block_start
            if start.index != len(self.message.content):
                raise StreamProtocolError(f"content block {start.index} started out of order")
            self.message.content.add().CopyFrom(start.content_block)
        elif kind == "content_block_stop":
            index = event.content_block_stop.index
            parts = self._json_parts.pop(index, None)
            if parts:
                block = self._block(index)
                try:
                    value = json.loads("".join(parts))
                except ValueError as exc:
                    raise StreamProtocolError(f"tool input of block {index} is not JSON: {exc}") from None
                block.tool_use.input.Clear()
                block.tool_use.input.update(value if isinstance(value, dict) else {"value": value})
        elif kind == "message_delta":
            delta = event.message_delta
            self.message.stop_reason = delta.stop_reason
            self.message.stop_sequence = delta.stop_sequence
            if delta.HasField("usage"):
                self.message.usage.CopyFrom(delta.usage)
        elif kind == "message_stop":
            self.done = True

    def _block(self, index: int) -> m.ContentBlock:
        if index >= len(self.message.content):
            raise StreamProtocolError(f"delta for content block {index} before its start")
        return self.message.content[index]


def message_to_events(message: m.AssistantMessage) -> list[m.StreamEvent]:
    """The event sequence that streams `message` (e.g. a cached response)."""
    shell = m.AssistantMessage(id=message.id, model=message.model)
    shell.usage.CopyFrom(message.usage)
    shell.usage.output_tokens = 0
    events = [m.StreamEvent(message_start=m.MessageStart(message=shell))]
    for index, block in enumerate(message.content):
        kind = block.WhichOneof("block")
        start = m.ContentBlock()
        if kind == "text":
            start.text.SetInParent()
            delta = m.ContentBlockDelta(index=index, text_delta=block.text.text)
        elif kind == "tool_use":
            start.tool_use.id = block.tool_use.id
            start.tool_use.name = block.tool_use.name
            start.tool_use.input.CopyFrom(struct_pb2.Struct())
            delta = m.ContentBlockDelta(index=index, input_json_delta=_struct_json(block.tool_use.input))
        else:
            raise ValueError(f"cannot stream a {kind} block")
        events.append(m.StreamEvent(content_block_start=m.ContentBlockStart(index=index, content_block=start)))
        events.append(m.StreamEvent(content_block_delta=delta))
        events.append(m.StreamEvent(content_block_stop=m.ContentBlockStop(index=index)))
    events.append(
        m.StreamEvent(
            message_delta=m.MessageDelta(
                stop_reason=message.stop_reason, stop_sequence=message.stop_sequence, usage=message.usage
            )
        )
    )
    events.append(m.StreamEvent(message_stop=m.MessageStop()))
    return events


def _struct_json(value: struct_pb2.Struct) -> str:
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(value), separators=(",", ":"))
