"""Proto <-> SDK conversions of the inference adapter, on the SDK's own types."""

from __future__ import annotations

from anthropic.types import (
    MessageDeltaUsage, RawContentBlockDeltaEvent, RawContentBlockStartEvent, RawMessageDeltaEvent,
    RawMessageStartEvent, TextDelta,
)
from anthropic.types import Message as SdkMessage
from anthropic.types import TextBlock as SdkTextBlock
from anthropic.types import Usage as SdkUsage

from sluice.gateway.anthropic_json import parse_request
from sluice.inference.anthropic_upstream import request_kwargs, to_event
from sluice.llm.v1 import messages_pb2 as m


def test_request_kwargs_round_trip_the_facade_json():
    body = {
        "max_tokens": 9, "temperature": 0.2, "stop_sequences": ["X"], "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"name": "t", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "any"},
    }
    params, _ = parse_request(body)
    kwargs = request_kwargs(params, "claude-sonnet-4-6")
    assert kwargs["model"] == "claude-sonnet-4-6"
    assert kwargs["system"] == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    assert kwargs["messages"] == body["messages"]
    assert kwargs["tools"] == [{"name": "t", "input_schema": {"type": "object"}}]
    assert kwargs["tool_choice"] == {"type": "any"}
    assert (kwargs["temperature"], kwargs["stop_sequences"], kwargs["metadata"]) == (0.2, ["X"], {"user_id": "u"})
    assert "top_p" not in kwargs and "top_k" not in kwargs


def test_events_carry_cumulative_usage():
    usage = m.Usage()
    start = to_event(RawMessageStartEvent(type="message_start", message=SdkMessage(
        id="msg_1", type="message", role="assistant", model="up", content=[], stop_reason=None, stop_sequence=None,
        usage=SdkUsage(input_tokens=11, output_tokens=1, cache_creation_input_tokens=0, cache_read_input_tokens=7))),
        usage)
    assert start.message_start.message.usage.input_tokens == 11
    block = to_event(RawContentBlockStartEvent(type="content_block_start", index=0,
                                               content_block=SdkTextBlock(type="text", text="")), usage)
    assert block.content_block_start.content_block.WhichOneof("block") == "text"
    delta = to_event(RawContentBlockDeltaEvent(type="content_block_delta", index=0,
                                               delta=TextDelta(type="text_delta", text="yo")), usage)
    assert delta.content_block_delta.text_delta == "yo"
    end = to_event(RawMessageDeltaEvent(type="message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None},
                                        usage=MessageDeltaUsage(output_tokens=30)), usage)
    u = end.message_delta.usage
    assert (u.input_tokens, u.output_tokens, u.cache_read_input_tokens) == (11, 30, 7)
    assert end.message_delta.stop_reason == "end_turn"
