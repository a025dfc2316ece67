from __future__ import annotations

import json

import pytest

from sluice.gateway.anthropic_json import message_json, parse_request, render_event
from sluice.gateway.validation import validate
from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import Reason, SluiceError


def test_full_request_parses():
    params, stream = parse_request({
        "model": "claude-sonnet-4-6", "max_tokens": 100, "stream": True,
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "tu1", "name": "get", "input": {"q": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu1", "content": "42"}]},
        ],
        "temperature": 0.5, "top_p": 1, "top_k": 5, "stop_sequences": ["END"], "metadata": {"user_id": "u1"},
        "tools": [{"name": "get", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "get"},
    })
    assert stream is True
    assert params.system[0].cache_control.ttl == m.CacheControl.TTL_ONE_HOUR
    assert params.messages[0].content[1].image.base64.media_type == "image/png"
    assert params.messages[1].content[0].tool_use.input["q"] == 1
    assert params.messages[2].content[0].tool_result.content[0].text.text == "42"
    assert params.temperature == 0.5 and params.top_k == 5
    assert params.tool_choice.mode == m.ToolChoice.MODE_TOOL
    validate(params)


@pytest.mark.parametrize("body,field", [
    ({"messages": []}, "max_tokens"),
    ({"max_tokens": True, "messages": []}, "max_tokens"),
    ({"max_tokens": 1}, "messages"),
    ({"max_tokens": 1, "messages": "hi"}, "messages"),
    ({"max_tokens": 1, "messages": [{"role": "user"}]}, "messages.0.content"),
    ({"max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "messages.0.content.0.type"),
    ({"max_tokens": 1, "messages": [{"role": "user", "content": "x", "name": "n"}]}, "messages.0.name"),
    ({"max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "x", "cache_control": {"type": "permanent"}}]}]}, "messages.0.content.0.cache_control.type"),
    ({"max_tokens": 1, "messages": [], "system": [{"type": "image"}]}, "system.0.type"),
    ({"max_tokens": 1, "messages": [], "thinking": {"type": "enabled"}}, "thinking"),
    ({"max_tokens": 1, "messages": [], "stream": "yes"}, "stream"),
    ({"max_tokens": 1, "messages": [], "tool_choice": {"type": "maybe"}}, "tool_choice.type"),
])
def test_structural_errors_name_the_field(body, field):
    with pytest.raises(SluiceError) as err:
        parse_request(body)
    assert err.value.reason is Reason.INVALID_REQUEST
    assert err.value.field_violations[0].field == field


def _params(**kw) -> m.MessageParams:
    body = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    body.update(kw)
    return parse_request(body)[0]


@pytest.mark.parametrize("kw,field", [
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 10_000_001}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "user", "content": []}]}, "messages.0.content"),
    ({"messages": [{"role": "user", "content": ""}]}, "messages.0.content.0.text"),
    ({"temperature": 1.5}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"stop_sequences": ["  "]}, "stop_sequences.0"),
    ({"tools": [{"name": "bad name!", "input_schema": {}}]}, "tools.0.name"),
    ({"tools": [{"name": "a", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "b"}}, "tool_choice.name"),
    ({"system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}] * 5}, "cache_control"),
])
def test_semantic_errors_name_the_field(kw, field):
    with pytest.raises(SluiceError) as err:
        validate(_params(**kw))
    assert err.value.field_violations[0].field == field


def _sse(raw: bytes) -> tuple[str, dict]:
    text = raw.decode()
    assert text.endswith("\n\n")
    event_line, data_line = text.strip().split("\n")
    assert event_line.startswith("event: ") and data_line.startswith("data: ")
    return event_line[7:], json.loads(data_line[6:])


@pytest.mark.parametrize("text", ["plain", 'quote " and \\ slash', "new\nline", "ünïcødé ✓ 漢字", "</script>"])
def test_text_delta_fast_path_is_valid_json(text):
    event = m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=2, text_delta=text))
    name, data = _sse(render_event(event))
    assert name == "content_block_delta"
    assert data == {"type": "content_block_delta", "index": 2, "delta": {"type": "text_delta", "text": text}}


def test_every_event_kind_renders_like_the_api():
    usage = m.Usage(input_tokens=3, output_tokens=7, cache_creation_input_tokens=1, cache_read_input_tokens=2)
    events = [
        m.StreamEvent(message_start=m.MessageStart(message=m.AssistantMessage(id="msg_1", model="x", usage=usage))),
        m.StreamEvent(content_block_start=m.ContentBlockStart(index=0, content_block=m.ContentBlock(text=m.TextBlock()))),
        m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=0, input_json_delta='{"a":')),
        m.StreamEvent(content_block_stop=m.ContentBlockStop(index=0)),
        m.StreamEvent(message_delta=m.MessageDelta(stop_reason="end_turn", usage=usage)),
        m.StreamEvent(message_stop=m.MessageStop()),
        m.StreamEvent(ping=m.Ping()),
        m.StreamEvent(error=m.StreamError(type="overloaded_error", message="busy")),
    ]
    rendered = [_sse(render_event(e)) for e in events]
    assert [name for name, _ in rendered] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop", "ping", "error"]
    start = rendered[0][1]["message"]
    assert start["content"] == [] and start["role"] == "assistant" and start["stop_reason"] is None
    assert rendered[2][1]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":'}
    assert rendered[4][1] == {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                              "usage": {"input_tokens": 3, "cache_creation_input_tokens": 1,
                                        "cache_read_input_tokens": 2, "output_tokens": 7}}
    assert rendered[7][1] == {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}


def test_message_json_shape():
    msg = m.AssistantMessage(id="msg_1", model="claude-haiku-4-5", stop_reason="tool_use",
                             content=[m.ContentBlock(tool_use=m.ToolUseBlock(id="t", name="n"))])
    msg.content[0].tool_use.input.update({"k": "v"})
    out = message_json(msg)
    assert out["content"] == [{"type": "tool_use", "id": "t", "name": "n", "input": {"k": "v"}}]
    assert out["type"] == "message" and out["stop_sequence"] is None
