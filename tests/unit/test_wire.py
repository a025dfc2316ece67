"""The wire codec: exact JSON text, request views and checks, stream events,
assembly of whole messages, and the typed view."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sluice.llm.v1 import messages_pb2 as m
from sluice.rpc.errors import Reason, SluiceError
from sluice.wire import jsontext
from sluice.wire.assemble import MessageAssembler, StreamProtocolError
from sluice.wire.events import Event, merge_usage, sse_events, with_index, with_message_model
from sluice.wire.request import MessagesRequest, upstream_body
from sluice.wire.typed import event_proto, message_proto, params_json

# -- strategies -------------------------------------------------------------------

keys = st.text(st.characters(codec="utf-8", exclude_characters='"\\'), min_size=1, max_size=8)
class Num(str):
    """A number's JSON text, written verbatim by `_text`."""


def _text(value) -> str:  # type: ignore[no-untyped-def]
    if isinstance(value, Num):
        return str(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}: {_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


json_numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(lambda i: Num(str(i))),
    st.sampled_from(["17", "1.50", "1e5", "-0.0", "9007199254740993", "1E-7", "0.1000000000000000055511"]).map(Num),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), json_numbers, st.text(st.characters(codec="utf-8"), max_size=10)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=20,
)
unknown_blocks = st.fixed_dictionaries({"type": st.sampled_from(["x_future_block", "web_search_tool_result",
                                                                   "redacted_thinking"]),
                                        "payload": json_values})
tool_use_blocks = st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.just("toolu_1"),
                                         "name": st.just("calc"), "input": st.dictionaries(keys, json_values,
                                                                                            max_size=4)})
text_blocks = st.fixed_dictionaries({"type": st.just("text"), "text": st.text(min_size=1, max_size=20)})
requests = st.fixed_dictionaries(
    {"model": st.sampled_from(["claude-sonnet-4-6", "claude-haiku-4-5"]),
     "max_tokens": st.integers(0, 64000).map(lambda i: Num(str(i))),
     "messages": st.lists(st.fixed_dictionaries({
         "role": st.sampled_from(["user", "assistant"]),
         "content": st.lists(st.one_of(text_blocks, tool_use_blocks, unknown_blocks), min_size=1, max_size=3)}),
         min_size=1, max_size=3)},
    optional={"stream": st.booleans(), "x_future_field": json_values, "metadata": st.just({"user_id": "u"}),
              "thinking": st.just({"type": "adaptive"}), "temperature": json_numbers},
)


# -- jsontext -----------------------------------------------------------------------


@pytest.mark.parametrize("text,problem", [
    ('{"a": NaN}', "NaN is not a JSON value"),
    ('{"a": Infinity}', "Infinity is not a JSON value"),
    ('{"a": 1} x', "extra data"),
    ("[" * 100_000, "not valid JSON"),
    ('{"a": ' + "1" * 5000 + "}", "not valid JSON"),
    ('{"a": "\\ud800"}', "lone UTF-16 surrogate"),
])
def test_strict_parsing_refuses_what_json_or_unicode_does_not_allow(text, problem):
    with pytest.raises(jsontext.JsonTextError) as err:
        jsontext.loads(text)
    assert problem in err.value.message


def test_a_lone_surrogate_is_named_by_its_path_and_a_pair_is_fine():
    with pytest.raises(jsontext.JsonTextError) as err:
        jsontext.loads('{"messages": [{"content": [{"text": "ok"}, {"text": "bad \\udc00"}]}]}')
    assert err.value.path == ("messages", 0, "content", 1, "text")
    assert jsontext.loads('{"emoji": "\\ud83d\\ude00"}') == {"emoji": "\U0001f600"}


def test_spans_and_splices_keep_every_other_byte():
    text = '{ "a" : {"n": 9007199254740993, "f": 1.50},\n "b": "x", "b": "last" }'
    assert jsontext.value_span(text, ("b",)) == (text.rindex('"last"'), text.rindex('"last"') + 6)
    edited = jsontext.replace_values(text, [(("b",), "new \u00e9"), (("a", "n"), 7)])
    assert edited == '{ "a" : {"n": 7, "f": 1.50},\n "b": "x", "b": "new \u00e9" }'
    with pytest.raises(KeyError):
        jsontext.value_span(text, ("a", "missing"))


@given(st.lists(st.one_of(keys, st.integers(0, 9), st.just("²"), st.just("07")), max_size=5))
def test_json_pointers_round_trip(tokens):
    path = tuple(tokens)
    assert jsontext.parse_pointer(jsontext.pointer(path)) == tuple(
        int(t) if isinstance(t, str) and t.isascii() and t.isdigit() and (t == "0" or not t.startswith("0")) else t
        for t in path)


# -- requests -------------------------------------------------------------------------


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_valid_requests_go_upstream_with_their_exact_text(body):
    """Whatever a client sends (unknown fields, unknown blocks, any number
    form) reaches the upstream byte-exact, apart from the declared edits:
    model and stream set first."""
    raw = _text(body).encode()
    request = MessagesRequest(raw, "2023-06-01")
    sent = upstream_body(request.template(), [("model", "upstream-id"), ("stream", True)])
    members, _ = jsontext.object_members(sent.decode())
    assert [m_.key for m_ in members[:2]] == ["model", "stream"]
    assert members[0].value == "upstream-id" and members[1].value is True
    original = {m_.key: raw.decode()[m_.value_start:m_.end] for m_ in request.members}
    forwarded = {m_.key: sent.decode()[m_.value_start:m_.end] for m_ in members[2:]}
    assert forwarded == {k: v for k, v in original.items() if k not in ("model", "stream")}


@settings(max_examples=100)
@given(requests, st.text(min_size=1, max_size=10))
def test_redaction_edits_change_only_the_texts_they_name(body, replacement):
    raw = _text(body).encode()
    request = MessagesRequest(raw, "2026-10-21")
    texts = request.texts()
    edited = request.with_edits([(t.path, replacement) for t in texts])
    assert [t.text for t in edited.texts()] == [replacement] * len(texts)
    if not texts:
        assert edited.raw == raw
    # Outside the edited strings, the JSON is unchanged (numbers keep their text).
    assert jsontext.loads(edited.text) == _replace(jsontext.loads(raw.decode()), {t.path for t in texts},
                                                   replacement)


def _replace(value, paths, replacement, here=()):  # type: ignore[no-untyped-def]
    if here in paths:
        return replacement
    if isinstance(value, dict):
        return {k: _replace(v, paths, replacement, (*here, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, paths, replacement, (*here, i)) for i, v in enumerate(value)]
    return value


hostile = st.one_of(
    st.binary(max_size=40),
    json_values.map(lambda v: _text(v).encode()),
    st.dictionaries(st.sampled_from(["model", "max_tokens", "messages", "system", "tools", "stream",
                                     "cache_control"]), json_values, max_size=5).map(lambda v: _text(v).encode()),
    st.fixed_dictionaries({"max_tokens": st.just(Num("10")), "messages": st.lists(
        st.dictionaries(st.sampled_from(["role", "content"]), json_values, max_size=2), max_size=3)}).map(
        lambda v: _text(v).encode()),
)


@settings(max_examples=400)
@given(hostile)
def test_any_body_is_a_request_or_a_400_naming_the_field(raw):
    try:
        request = MessagesRequest(raw, "2023-06-01")
    except SluiceError as err:
        assert err.reason is Reason.INVALID_REQUEST
        assert err.field_violations and err.field_violations[0].field
        return
    request.texts(), request.estimated_input_tokens(), request.cache_breakpoints(), request.prompt_text()
    assert request.template()


@pytest.mark.parametrize("body,field,words", [
    (b"[]", "(body)", "must be a JSON object"),
    (b'{"messages": []}', "max_tokens", "Field required"),
    (b'{"max_tokens": 18446744073709551616, "messages": []}', "max_tokens", "less than or equal"),
    (b'{"max_tokens": true, "messages": []}', "max_tokens", "valid integer"),
    (b'{"max_tokens": 5, "messages": [{"role": {"a": 1}, "content": "x"}]}', "messages.0.role", "valid string"),
    (b'{"max_tokens": 5, "messages": [{"role": "user", "content": "x\\ud800"}]}', "messages.0.content", "surrogate"),
    (b'{"max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "x"}]}]}', "messages.0.content.0.type",
     "Field required"),
    (b'{"max_tokens": 5, "messages": [], "system": 7}', "system", "list or string"),
    (b'{"max_tokens": 5, "messages": [], "stream": "yes"}', "stream", "valid boolean"),
    (b'\xff{}', "(body)", "UTF-8"),
])
def test_field_errors_name_the_field_as_the_api_does(body, field, words):
    with pytest.raises(SluiceError) as err:
        MessagesRequest(body, "2023-06-01")
    assert err.value.field_violations[0].field == field
    assert words in err.value.message


def test_texts_the_model_reads_and_their_paths():
    body = {
        "model": "m", "max_tokens": 5, "system": "be brief",
        "tools": [{"name": "t", "description": "looks up", "input_schema": {}}, {"type": "web_search_20260209"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"},
                                         {"type": "document", "source": {"type": "text", "data": "doc body"}}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "secret plan", "signature": "sig"},
                {"type": "tool_use", "id": "t1", "name": "t", "input": {"q": "where", "n": [1, {"deep": "x"}]}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "result"}]},
        ],
    }
    request = MessagesRequest(json.dumps(body).encode(), "2026-10-21")
    assert [(t.path, t.text) for t in request.texts()] == [
        (("tools", 0, "description"), "looks up"),
        (("system",), "be brief"),
        (("messages", 0, "content", 0, "text"), "hi"),
        (("messages", 0, "content", 1, "source", "data"), "doc body"),
        (("messages", 1, "content", 1, "input", "q"), "where"),
        (("messages", 1, "content", 1, "input", "n", 1, "deep"), "x"),
        (("messages", 2, "content", 0, "content"), "result"),
    ]
    assert "secret plan" not in request.prompt_text()  # thinking is not read or redacted
    assert request.prompt_text().startswith("system: be brief\n\nuser: hi\ndoc body")


def test_cache_breakpoints_in_prefix_order_with_their_ttls():
    body = {"max_tokens": 5, "cache_control": {"type": "ephemeral"},
            "tools": [{"name": "t", "input_schema": {}, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "system": [{"type": "text", "text": "s" * 400, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "u" * 800,
                                                       "cache_control": {"type": "ephemeral"}}]}]}
    points = MessagesRequest(json.dumps(body).encode()).cache_breakpoints()
    assert [ttl for _, ttl in points] == ["1h", "1h", "5m", "5m"]
    assert points[1][0] > points[0][0] and points[2][0] >= points[1][0] + 200


def test_the_estimate_counts_texts_images_and_tool_schemas():
    small = MessagesRequest(b'{"max_tokens": 1, "messages": [{"role": "user", "content": "abcd"}]}')
    image = MessagesRequest(json.dumps({"max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "A" * 100_000}}]}]}).encode())
    assert small.estimated_input_tokens() == 1 + 4
    assert 1600 <= image.estimated_input_tokens() < 2000  # an image is not its base64 length


# -- events ----------------------------------------------------------------------------


async def _chunks(*parts: bytes):  # type: ignore[no-untyped-def]
    for part in parts:
        yield part


def test_sse_framing_with_crlf_comments_split_chunks_and_missing_event_lines():
    async def collect() -> list[Event]:
        return [e async for e in sse_events(_chunks(
            b": comment\r\nevent: ping\r\ndata: {\"type\":\"ping\"}\r\n\r\nevent: content_block_delta\ndata: {\"ty",
            b'pe":"content_block_delta","index":0}\n\ndata: {"type":"message_stop"}\n\n'))]

    events = asyncio.run(collect())
    assert [e.type for e in events] == ["ping", "content_block_delta", "message_stop"]
    assert events[1].data == b'{"type":"content_block_delta","index":0}'


def test_a_stream_that_ends_inside_an_event_is_an_error():
    async def collect() -> None:
        async for _ in sse_events(_chunks(b"event: ping\ndata: {}")):
            pass

    with pytest.raises(ValueError):
        asyncio.run(collect())


def test_declared_event_edits_touch_only_their_value():
    start = Event("message_start", b'{"type":"message_start","message":{"model":"up-1","usage":{"n":1.50}}}')
    assert with_message_model(start, "claude-x").data == \
        b'{"type":"message_start","message":{"model":"claude-x","usage":{"n":1.50}}}'
    delta = Event("content_block_delta", b'{"type":"content_block_delta","index":3,"delta":{"x":1e5}}')
    assert with_index(delta, 2).data == b'{"type":"content_block_delta","index":2,"delta":{"x":1e5}}'


def test_usage_merges_cumulatively_keeping_what_a_delta_leaves_out():
    start = {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": 4, "service_tier": "standard"}
    merged = merge_usage(start, {"output_tokens": 40, "cache_read_input_tokens": None,
                                 "server_tool_use": {"web_search_requests": 2}})
    assert merged == {"input_tokens": 10, "output_tokens": 40, "cache_read_input_tokens": 4,
                      "service_tier": "standard", "server_tool_use": {"web_search_requests": 2}}


# -- assembly ---------------------------------------------------------------------------


def _ev(data: str) -> Event:
    return Event(json.loads(data)["type"], data.encode())


STREAM = [
    '{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[],'
    '"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":9,"output_tokens":1,"inference_geo":"us"}}}',
    '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"let me "}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"think"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"c2ln"}}',
    '{"type":"content_block_stop","index":0}',
    '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"","citations":[]}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location",'
    '"cited_text":"x","start_char_index":0,"end_char_index":1}}}',
    '{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Hello"}}',
    '{"type":"content_block_stop","index":1}',
    '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"t","name":"calc","input":{}}}',
    '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\\"n\\": 900719"}}',
    '{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"9254740993, '
    '\\"f\\": 1.50}"}}',
    '{"type":"content_block_stop","index":2}',
    '{"type":"content_block_start","index":3,"content_block":{"type":"web_search_tool_result","tool_use_id":"s",'
    '"content":[{"n":1.0}]}}',
    '{"type":"content_block_stop","index":3}',
    '{"type":"ping"}',
    '{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null,"container":{"id":"c"}},'
    '"usage":{"output_tokens":40,"server_tool_use":{"web_search_requests":1}},"context_management":{"edits":[]}}',
    '{"type":"message_stop"}',
]


def test_a_whole_message_from_every_kind_of_block_keeps_json_data_exact():
    assembler = MessageAssembler()
    for data in STREAM:
        assembler.feed(_ev(data))
    assert assembler.done
    text = assembler.json().decode()
    message = json.loads(text)
    assert message["content"][0] == {"type": "thinking", "thinking": "let me think", "signature": "c2ln"}
    assert message["content"][1]["text"] == "Hello" and message["content"][1]["citations"][0]["cited_text"] == "x"
    assert '"input":{"n": 9007199254740993, "f": 1.50}' in text  # the streamed JSON, verbatim
    assert '{"type":"web_search_tool_result","tool_use_id":"s","content":[{"n":1.0}]}' in text
    assert message["stop_reason"] == "tool_use" and message["container"] == {"id": "c"}
    assert message["context_management"] == {"edits": []}
    assert message["usage"] == {"input_tokens": 9, "output_tokens": 40, "inference_geo": "us",
                                "server_tool_use": {"web_search_requests": 1}}


def test_a_tool_call_cut_off_by_max_tokens_is_what_parses_of_it():
    assembler = MessageAssembler()
    for data in [STREAM[0], STREAM[10],
                 '{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta",'
                 '"partial_json":"{\\"city\\": \\"Par"}}',
                 '{"type":"content_block_stop","index":0}',
                 '{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":64}}',
                 '{"type":"message_stop"}']:
        fixed = data.replace('"index":2', '"index":0')
        assembler.feed(_ev(fixed))
    message = json.loads(assembler.json())
    assert message["stop_reason"] == "max_tokens"
    assert message["content"][0]["input"] == {"city": "Par"}


@pytest.mark.parametrize("events,problem", [
    (['{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'], "before message_start"),
    ([STREAM[0], '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"x"}}'],
     "before its start"),
    ([STREAM[0], '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}'],
     "out of order"),
])
def test_events_out_of_order_are_a_protocol_error(events, problem):
    assembler = MessageAssembler()
    with pytest.raises(StreamProtocolError) as err:
        for data in events:
            assembler.feed(_ev(data))
    assert problem in str(err.value)


# -- typed view --------------------------------------------------------------------------


def test_typed_params_become_json_with_integers_kept():
    params = m.MessageParams(model="claude-sonnet-4-6", max_tokens=64, temperature=0.5,
                             messages=[m.Message(role=m.ROLE_USER, content=[m.ContentBlock(text=m.TextBlock(text="hi"))])])
    tool = params.messages.add(role=m.ROLE_ASSISTANT).content.add().tool_use
    tool.id, tool.name = "t1", "calc"
    tool.input.update({"n": 17, "x": 1.5})
    body = json.loads(params_json(params))
    assert body["messages"][1]["content"][0]["input"] == {"n": 17, "x": 1.5}
    assert isinstance(body["messages"][1]["content"][0]["input"]["n"], int)
    assert body["temperature"] == 0.5 and "stream" not in body
    assert "max_tokens" not in json.loads(params_json(params, count_tokens=True))


def test_typed_views_of_events_and_messages():
    assert event_proto(_ev(STREAM[1])) is None  # thinking has no typed form
    delta = event_proto(_ev(STREAM[8]))
    assert delta is not None and delta.content_block_delta.text_delta == "Hello"
    hostile = event_proto(Event("content_block_delta", b'{"index":"x","delta":{"type":"text_delta","text":"\\ud800"}}'))
    assert hostile is not None and hostile.content_block_delta.text_delta == "?"
    assembler = MessageAssembler()
    for data in STREAM:
        assembler.feed(_ev(data))
    typed = message_proto(json.loads(assembler.json()))
    assert [b.WhichOneof("block") for b in typed.content] == ["text", "tool_use"]
    assert typed.usage.server_tool_use["web_search_requests"] == 1 and typed.usage.inference_geo == "us"


def test_numbers_the_view_cannot_reproduce_keep_the_upstreams_text():
    events = [STREAM[0].replace('"inference_geo":"us"}', '"inference_geo":"us"},"x_score":1.50'),
              STREAM[6], STREAM[8], STREAM[9],
              '{"type":"message_delta","delta":{"stop_reason":"end_turn","x_weight":2.50},'
              '"usage":{"output_tokens":3},"x_big":18446744073709551617}',
              '{"type":"message_stop"}']
    assembler = MessageAssembler()
    for data in events:
        assembler.feed(_ev(data.replace('"index":1', '"index":0')))
    text = assembler.json().decode()
    assert '"x_score":1.50' in text and '"x_weight":2.50' in text and '"x_big":18446744073709551617' in text
    assert json.loads(text)["content"] == [{"type": "text", "text": "Hello", "citations": []}]


def test_edits_reach_strings_under_keys_that_look_like_numbers():
    body = {"max_tokens": 5, "messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "n", "input": {"²": "secret one", "07": ["secret two"], "0": "x"}}]}]}
    request = MessagesRequest(json.dumps(body).encode())
    edits = [(jsontext.parse_pointer(jsontext.pointer(t.path)), "[gone]") for t in request.texts()]
    edited = request.with_edits(edits)
    assert edited.doc["messages"][0]["content"][0]["input"] == {"²": "[gone]", "07": ["[gone]"], "0": "[gone]"}
