"""The streaming output filter: values split across chunks, unicode tricks,
a block rule's refusal stop, flags, thinking blocks (whole or not at all),
and events it must pass untouched."""

from __future__ import annotations

import json

import pytest

from sluice.safety.engine import REFUSAL, OutputFilter
from sluice.safety.policy import SHIPPED_POLICY_DIR, load_policy
from sluice.safety.v1 import verdict_pb2 as v
from sluice.wire.events import Event

POLICY = load_policy(SHIPPED_POLICY_DIR)


def _e(data: dict) -> Event:
    return Event.of(data)


def _start(index: int, block: dict) -> Event:
    return _e({"type": "content_block_start", "index": index, "content_block": block})


def _delta(index: int, delta: dict) -> Event:
    return _e({"type": "content_block_delta", "index": index, "delta": delta})


def _stop(index: int) -> Event:
    return _e({"type": "content_block_stop", "index": index})


def _answer(text: str, chunk: int, extra_blocks: list[Event] | None = None) -> list[Event]:
    events = [
        _e({"type": "message_start", "message": {"id": "msg_1", "model": "claude-sonnet-4-6",
                                                 "usage": {"input_tokens": 10, "output_tokens": 1}}}),
        _start(0, {"type": "text", "text": ""}),
    ]
    events += [_delta(0, {"type": "text_delta", "text": text[i:i + chunk]}) for i in range(0, len(text), chunk)]
    events.append(_stop(0))
    events += extra_blocks or []
    events += [_e({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 7}}),
               _e({"type": "message_stop"})]
    return events


def _run(events: list[Event], profile: str = "default") -> tuple[list[Event], OutputFilter]:
    out_filter = OutputFilter(POLICY.profile(profile, "acme"))
    out: list[Event] = []
    for event in events:
        out += out_filter.feed(event)
    out += out_filter.close()
    return out, out_filter


def _deltas(events: list[Event], kind: str = "text_delta", field: str = "text") -> list[str]:
    return [e.view["delta"][field] for e in events
            if e.type == "content_block_delta" and e.view["delta"].get("type") == kind]


def _kinds(events: list[Event]) -> list[str]:
    return [e.type for e in events]


SECRET_VALUES = ["jane.doe@example.com", "4111 1111 1111 1111", "+44 20 7946 0958", "123-45-6789",
                 "DE89 3704 0044 0532 0130 00"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 13])
def test_values_split_across_chunks_are_redacted_and_no_piece_leaks(chunk):
    text = ("Sure. Her email is jane.doe@example.com and the card 4111 1111 1111 1111 was charged; "
            "call +44 20 7946 0958 about SSN 123-45-6789 or IBAN DE89 3704 0044 0532 0130 00. Thanks!")
    out, out_filter = _run(_answer(text, chunk))
    delivered = "".join(_deltas(out))
    assert delivered == ("Sure. Her email is [EMAIL_1] and the card [PAYMENT_CARD_1] was charged; "
                         "call [PHONE_1] about SSN [US_SSN_1] or IBAN [IBAN_1]. Thanks!")
    for value in SECRET_VALUES:
        # Not whole, and no delta carries a telling piece of it either.
        assert value not in delivered
        assert not any(len(d) > 4 and d.strip() and d.strip() in value for d in _deltas(out)), _deltas(out)
    assert set(out_filter.verdict().rule_ids) == {"pii.email", "pii.payment-card", "pii.phone", "pii.us-ssn",
                                                  "pii.iban"}
    assert _kinds(out)[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_long_answers_are_released_as_they_stream_not_at_the_end():
    text = "word " * 200
    out_filter = OutputFilter(POLICY.profile("default", "acme"))
    released_before_end = []
    for event in _answer(text, 5)[:-3]:  # everything up to the block's stop
        released_before_end += _deltas(out_filter.feed(event))
    held = len(text) - len("".join(released_before_end))
    assert len(released_before_end) > 10
    assert held <= 64 + 16  # at most the holdback window and one release step


def test_unicode_tricks_in_the_answer_are_caught():
    text = "Write to jo\u200bhn@exa\u200bmple.com or pay with ４１１１ １１１１ １１１１ １１１１ today."
    out, _ = _run(_answer(text, 3))
    assert "".join(_deltas(out)) == "Write to [EMAIL_1] or pay with [PAYMENT_CARD_1] today."


def test_a_block_rule_ends_the_answer_with_a_refusal_and_none_of_the_secret():
    key = "sk-ant-api03-" + "Q" * 40
    text = f"Here is the key you asked for: {key} and more text after it."
    out, out_filter = _run(_answer(text, 4))
    delivered = "".join(_deltas(out))
    assert delivered == "Here is the key you asked for: "
    assert "sk-ant" not in delivered
    kinds = _kinds(out)
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    stop = out[-2].view
    assert stop["delta"]["stop_reason"] == REFUSAL
    assert stop["usage"]["input_tokens"] == 10 and stop["usage"]["output_tokens"] > 0
    assert out_filter.stopped and out_filter.verdict().action == v.ACTION_BLOCK
    assert out_filter.verdict().rule_ids == ["secret.in-answer"]
    assert kinds.count("message_stop") == 1  # the model's own end was not passed on


def test_a_private_key_streamed_line_by_line_is_stopped_before_any_of_it_leaks():
    pem = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC"] * 20)
    out, out_filter = _run(_answer("Key follows.\n" + pem + "\n-----END PRIVATE KEY-----\n", 9))
    assert "".join(_deltas(out)) == "Key follows.\n"
    assert out_filter.stopped


def test_a_flag_rule_lets_the_answer_through_and_says_so_in_the_verdict():
    text = "Take 500 mg twice daily with food, and see your doctor."
    out, out_filter = _run(_answer(text, 6), profile="medical")
    assert "".join(_deltas(out)) == text
    verdict = out_filter.verdict()
    assert verdict.action == v.ACTION_FLAG and verdict.rule_ids == ["medical.dosage-in-answer"]
    assert verdict.stage == v.STAGE_OUTPUT and verdict.profile == "medical"


def test_tool_use_unknown_events_and_blocks_pass_in_order_and_unchanged():
    tool = [_start(1, {"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}),
            _delta(1, {"type": "input_json_delta", "partial_json": '{"q": 1}'}), _stop(1)]
    future = [Event("content_block_start", b'{"type":"content_block_start","index":2,"content_block":'
                                           b'{"type":"x_future","n":1.50}}'),
              Event("content_block_delta", b'{"type":"content_block_delta","index":2,"delta":{"type":"x_delta"}}'),
              _stop(2), Event("x_future_event", b'{"type":"x_future_event","n":9007199254740993}')]
    events = _answer("Looking that up.", 4, tool + future)
    events.insert(3, _e({"type": "ping"}))
    out, out_filter = _run(events)
    assert _kinds(out) == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
                           "content_block_start", "content_block_delta", "content_block_stop",
                           "content_block_start", "content_block_delta", "content_block_stop", "x_future_event",
                           "message_delta", "message_stop"]
    assert _deltas(out, "input_json_delta", "partial_json") == ['{"q": 1}']
    for original in future:
        assert original in out  # byte for byte
    assert out_filter.verdict().action == v.ACTION_ALLOW and not out_filter.verdict().rule_ids


def test_a_stream_cut_short_still_releases_what_was_held():
    events = _answer("A short answer that ends abruptly", 5)[:-3]  # no block stop, no message end
    out, _ = _run(events)
    assert "".join(_deltas(out)) == "A short answer that ends abruptly"


def test_placeholders_stay_consistent_across_the_answer():
    text = "Mail a@example.com, then b@example.com, then a@example.com again. " + "filler " * 30
    out, _ = _run(_answer(text, 4))
    assert "".join(_deltas(out)).startswith("Mail [EMAIL_1], then [EMAIL_2], then [EMAIL_1] again.")


async def _requests(*parts):
    for part in parts:
        yield part


async def test_filter_output_refuses_a_stream_that_does_not_start_with_the_principal():
    from sluice.auth.v1 import principal_pb2
    from sluice.llm.v1 import wire_pb2
    from sluice.rpc.errors import Reason, SluiceError
    from sluice.safety.core import PolicyStore, SafetyPolicy
    from sluice.safety.v1 import safety_service_pb2 as pb

    service = SafetyPolicy(PolicyStore(SHIPPED_POLICY_DIR))
    event = pb.FilterOutputRequest(event=wire_pb2.WireEvent(type="ping", data=b'{"type":"ping"}'))
    with pytest.raises(SluiceError) as err:
        [r async for r in service.filter_output(_requests(event))]
    assert err.value.reason == Reason.INVALID_REQUEST and "principal" in err.value.message

    principal = pb.FilterOutputRequest(principal=principal_pb2.Principal(tenant_id="acme"))
    with pytest.raises(SluiceError, match="only events"):
        [r async for r in service.filter_output(_requests(principal, principal))]

    answered = [r async for r in service.filter_output(_requests(principal, event))]
    assert [r.WhichOneof("part") for r in answered] == ["event", "verdict"]


def _tool_call(json_text: str, chunk: int, kind: str = "tool_use", index: int = 1) -> list[Event]:
    events = [_start(index, {"type": kind, "id": "t1", "name": "send_mail", "input": {}})]
    events += [_delta(index, {"type": "input_json_delta", "partial_json": json_text[i:i + chunk]})
               for i in range(0, len(json_text), chunk)]
    return events + [_stop(index)]


def _json_deltas(events: list[Event]) -> list[str]:
    return _deltas(events, "input_json_delta", "partial_json")


@pytest.mark.parametrize("kind", ["tool_use", "server_tool_use"])
def test_a_tool_calls_arguments_are_held_whole_and_redacted_as_json(kind):
    args = '{"to": "jane.doe@example.com", "body": "call +44 20 7946 0958"}'
    out, out_filter = _run(_answer("Sending.", 4, _tool_call(args, 3, kind)))
    (delivered,) = _json_deltas(out)
    assert json.loads(delivered) == {"to": "[EMAIL_1]", "body": "call [PHONE_1]"}
    assert set(out_filter.verdict().rule_ids) == {"pii.email", "pii.phone"}


def test_a_secret_in_a_tool_call_delivers_none_of_the_call():
    args = '{"header": "Bearer sk-ant-api03-' + "Q" * 40 + '"}'
    out, out_filter = _run(_answer("Calling the API.", 4, _tool_call(args, 5)))
    assert _json_deltas(out) == []
    assert out[-2].view["delta"]["stop_reason"] == REFUSAL and out_filter.stopped


def _thinking(index: int, thought: str, signature: str = "c2lnbmF0dXJl") -> list[Event]:
    return [_start(index, {"type": "thinking", "thinking": "", "signature": ""})] + \
        [_delta(index, {"type": "thinking_delta", "thinking": thought[i:i + 7]}) for i in range(0, len(thought), 7)] + \
        [_delta(index, {"type": "signature_delta", "signature": signature}), _stop(index)]


def _with_thinking_first(thought: str) -> list[Event]:
    events = _answer("The answer is 42.", 5)
    shifted = [Event(e.type, e.data.replace(b'"index":0', b'"index":1')) for e in events]
    return [shifted[0], *_thinking(0, thought), *shifted[1:]]


def test_a_clean_thinking_block_is_delivered_byte_for_byte_when_it_ends():
    events = _with_thinking_first("Let me reason about the question carefully.")
    out_filter = OutputFilter(POLICY.profile("default", "acme"))
    during = [out_filter.feed(e) for e in events[:9]]
    assert all(not part for part in during[1:8])  # held until its stop
    out, _ = _run(events)
    for original in events[1:10]:
        assert original in out
    assert [e.view["index"] for e in out if "index" in e.view][:3] == [0, 0, 0]


def test_a_thinking_block_with_pii_is_dropped_whole_and_later_blocks_renumbered():
    events = _with_thinking_first("The user is jane.doe@example.com, so I should greet her.")
    out, out_filter = _run(events)
    assert not [e for e in out if b"thinking" in e.data or b"signature" in e.data]
    assert {e.view["index"] for e in out if "index" in e.view} == {0}
    assert "".join(_deltas(out)) == "The answer is 42."
    assert "pii.email" in out_filter.verdict().rule_ids


def test_a_secret_in_thinking_stops_the_answer_with_nothing_of_the_block():
    out, out_filter = _run(_with_thinking_first("The key is sk-ant-api03-" + "Q" * 40))
    assert _kinds(out) == ["message_start", "message_delta", "message_stop"]
    assert out[1].view["delta"]["stop_reason"] == REFUSAL and out_filter.stopped


def test_citations_follow_the_text_they_came_after():
    citation = {"type": "char_location", "cited_text": "Paris", "document_index": 0,
                "start_char_index": 0, "end_char_index": 5}
    events = _answer("The capital of France is Paris, as the document says. " * 3, 6)
    events.insert(5, _delta(0, {"type": "citations_delta", "citation": citation}))
    out, _ = _run(events)
    kinds = [(e.type, e.view.get("delta", {}).get("type")) for e in out]
    at = kinds.index(("content_block_delta", "citations_delta"))
    assert ("content_block_delta", "text_delta") in kinds[:at]
    assert "".join(_deltas(out)) == "The capital of France is Paris, as the document says. " * 3
    assert json.loads(out[at].data)["delta"]["citation"] == citation


@pytest.mark.parametrize("chunk", [1, 3, 7, 16])
def test_a_value_longer_than_the_holdback_is_never_released_in_part(chunk):
    # A JWT matches only once its second part arrives, 150 characters in:
    # before, the filter holds the unbroken run it is part of.
    header = "eyJ" + "h" * 147
    token = f"{header}.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlX3BhcnQ"
    text = "Here is what the logs show: " + token + " and that is all."
    out, out_filter = _run(_answer(text, chunk))
    delivered = "".join(_deltas(out))
    assert header[:8] not in delivered
    assert delivered.startswith("Here is what the logs show: ")
    assert out_filter.verdict().action == v.ACTION_BLOCK


def test_an_unbroken_run_past_the_bound_is_released_and_text_after_it_flows():
    from sluice.safety.engine import MAX_RUN_CHARS

    blob = "x" * (MAX_RUN_CHARS + 500)
    out, _ = _run(_answer("start " + blob + " end of answer " + "word " * 40, 5))
    delivered = "".join(_deltas(out))
    assert delivered == "start " + blob + " end of answer " + "word " * 40


@pytest.mark.parametrize("block_type", ["tool_use", "mcp_tool_use"])
def test_a_tool_calls_arguments_are_redacted_value_by_value_and_stay_json(block_type):
    arguments = '{"a": "x\\njane.doe@example.com\\n", "b": 4111111111111111, "c": [1, "ok"]}'
    events = [_e({"type": "message_start", "message": {"id": "m", "model": "claude-sonnet-4-6", "usage": {}}}),
              _start(0, {"type": block_type, "id": "t1", "name": "crm", "input": {}})]
    events += [_delta(0, {"type": "input_json_delta", "partial_json": arguments[i:i + 5]})
               for i in range(0, len(arguments), 5)]
    events += [_stop(0), _e({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}}),
               _e({"type": "message_stop"})]
    out, out_filter = _run(events)
    delivered = json.loads("".join(_deltas(out, "input_json_delta", "partial_json")))
    assert delivered == {"a": "x\n[EMAIL_1]\n", "b": "[PAYMENT_CARD_1]", "c": [1, "ok"]}
    assert sorted(out_filter.verdict().rule_ids) == ["pii.email", "pii.payment-card"]


async def test_a_buffered_answer_filtered_as_one_batch_releases_what_event_by_event_does():
    """FilterOutput's batches (a buffered request's answer in one message) redact and release
    exactly as its event-by-event stream does, and come back as one batch."""
    from sluice.auth.v1 import principal_pb2
    from sluice.llm.v1 import wire_pb2
    from sluice.safety.core import PolicyStore, SafetyPolicy
    from sluice.safety.v1 import safety_service_pb2 as pb

    service = SafetyPolicy(PolicyStore(SHIPPED_POLICY_DIR))
    principal = pb.FilterOutputRequest(principal=principal_pb2.Principal(tenant_id="acme"))
    answer = _answer("Mail a@example.com, then b@example.com, then a@example.com again. " + "filler " * 30, 4)
    wire = [wire_pb2.WireEvent(type=e.type, data=e.data) for e in answer]

    one_by_one = [r async for r in service.filter_output(
        _requests(principal, *(pb.FilterOutputRequest(event=w) for w in wire)))]
    batched = [r async for r in service.filter_output(
        _requests(principal, pb.FilterOutputRequest(events=wire_pb2.WireEvents(events=wire))))]

    def events(responses):
        out = []
        for r in responses:
            out += [r.event] if r.WhichOneof("part") == "event" else list(r.events.events) \
                if r.WhichOneof("part") == "events" else []
        return [(e.type, e.data) for e in out]

    assert events(batched) == events(one_by_one) and b"[EMAIL_1]" in b"".join(d for _, d in events(batched))
    assert [r.WhichOneof("part") for r in batched][-1] == "verdict"
    assert all(r.WhichOneof("part") in ("events", "verdict") for r in batched)
    assert batched[-1].verdict == one_by_one[-1].verdict
