from __future__ import annotations

import pytest

from sluice.llm.stream import MessageAssembler, StreamProtocolError, message_to_events
from sluice.llm.v1 import messages_pb2 as m


def _message() -> m.AssistantMessage:
    msg = m.AssistantMessage(id="msg_1", model="claude-sonnet-4-6", stop_reason="tool_use",
                             usage=m.Usage(input_tokens=10, output_tokens=20, cache_read_input_tokens=4))
    msg.content.add().text.text = "Let me check."
    tool = msg.content.add().tool_use
    tool.id, tool.name = "tu_1", "weather"
    tool.input.update({"city": "Oslo", "days": 3})
    return msg


def test_events_of_a_message_reassemble_to_it():
    message = _message()
    assembler = MessageAssembler()
    for event in message_to_events(message):
        assembler.feed(event)
    assert assembler.done
    assert assembler.message == message


def test_text_deltas_concatenate():
    assembler = MessageAssembler()
    assembler.feed(m.StreamEvent(message_start=m.MessageStart(message=m.AssistantMessage(id="x"))))
    assembler.feed(m.StreamEvent(content_block_start=m.ContentBlockStart(index=0, content_block=m.ContentBlock(text=m.TextBlock()))))
    for piece in ("Hel", "lo", "!"):
        assembler.feed(m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=0, text_delta=piece)))
    assert assembler.message.content[0].text.text == "Hello!"
    assert not assembler.done


def test_out_of_order_events_are_protocol_errors():
    assembler = MessageAssembler()
    with pytest.raises(StreamProtocolError):
        assembler.feed(m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=0, text_delta="x")))
    with pytest.raises(StreamProtocolError):
        assembler.feed(m.StreamEvent(content_block_start=m.ContentBlockStart(index=3)))
