"""The streaming output filter: values split across chunks, unicode tricks,
a block rule's refusal stop, flags, and events it must pass untouched."""

from __future__ import annotations

import pytest

from sluice.llm.v1 import messages_pb2 as m
from sluice.safety.engine import REFUSAL, OutputFilter
from sluice.safety.policy import SHIPPED_POLICY_DIR, load_policy
from sluice.safety.v1 import verdict_pb2 as v

POLICY = load_policy(SHIPPED_POLICY_DIR)


def _answer(text: str, chunk: int, extra_blocks: list[m.StreamEvent] | None = None) -> list[m.StreamEvent]:
    events = [
        m.StreamEvent(message_start=m.MessageStart(message=m.AssistantMessage(
            id="msg_1", model="claude-sonnet-4-6", usage=m.Usage(input_tokens=10)))),
        m.StreamEvent(content_block_start=m.ContentBlockStart(index=0, content_block=m.ContentBlock(
            text=m.TextBlock()))),
    ]
    events += [m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=0, text_delta=text[i:i + chunk]))
               for i in range(0, len(text), chunk)]
    events.append(m.StreamEvent(content_block_stop=m.ContentBlockStop(index=0)))
    events += extra_blocks or []
    events += [m.StreamEvent(message_delta=m.MessageDelta(stop_reason="end_turn", usage=m.Usage(output_tokens=7))),
               m.StreamEvent(message_stop=m.MessageStop())]
    return events


def _run(events: list[m.StreamEvent], profile: str = "default") -> tuple[list[m.StreamEvent], OutputFilter]:
    out_filter = OutputFilter(POLICY.profile(profile, "acme"))
    out: list[m.StreamEvent] = []
    for event in events:
        out += out_filter.feed(event)
    out += out_filter.close()
    return out, out_filter


def _deltas(events: list[m.StreamEvent]) -> list[str]:
    return [e.content_block_delta.text_delta for e in events if e.WhichOneof("event") == "content_block_delta"]


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
    assert [e.WhichOneof("event") for e in out][-3:] == ["content_block_stop", "message_delta", "message_stop"]


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
    kinds = [e.WhichOneof("event") for e in out]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    stop = out[-2].message_delta
    assert stop.stop_reason == REFUSAL and stop.usage.input_tokens == 10 and stop.usage.output_tokens > 0
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


def test_tool_use_and_other_events_pass_in_order():
    tool = [
        m.StreamEvent(content_block_start=m.ContentBlockStart(index=1, content_block=m.ContentBlock(
            tool_use=m.ToolUseBlock(id="t1", name="lookup")))),
        m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=1, input_json_delta='{"q": 1}')),
        m.StreamEvent(content_block_stop=m.ContentBlockStop(index=1)),
    ]
    events = _answer("Looking that up.", 4, tool)
    events.insert(3, m.StreamEvent(ping=m.Ping()))
    out, out_filter = _run(events)
    kinds = [e.WhichOneof("event") for e in out]
    assert kinds == ["message_start", "content_block_start", "ping", "content_block_delta", "content_block_stop",
                     "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
                     "message_stop"]
    assert out[6].content_block_delta.input_json_delta == '{"q": 1}'
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
    from sluice.rpc.errors import Reason, SluiceError
    from sluice.safety.core import PolicyStore, SafetyPolicy
    from sluice.safety.v1 import safety_service_pb2 as pb

    service = SafetyPolicy(PolicyStore(SHIPPED_POLICY_DIR))
    event = pb.FilterOutputRequest(event=m.StreamEvent(ping=m.Ping()))
    with pytest.raises(SluiceError) as err:
        [r async for r in service.filter_output(_requests(event))]
    assert err.value.reason == Reason.INVALID_REQUEST and "principal" in err.value.message

    principal = pb.FilterOutputRequest(principal=principal_pb2.Principal(tenant_id="acme"))
    with pytest.raises(SluiceError, match="only events"):
        [r async for r in service.filter_output(_requests(principal, principal))]

    answered = [r async for r in service.filter_output(_requests(principal, event))]
    assert [r.WhichOneof("part") for r in answered] == ["event", "verdict"]


def _tool_call(json_text: str, chunk: int) -> list[m.StreamEvent]:
    events = [m.StreamEvent(content_block_start=m.ContentBlockStart(index=1, content_block=m.ContentBlock(
        tool_use=m.ToolUseBlock(id="t1", name="send_mail"))))]
    events += [m.StreamEvent(content_block_delta=m.ContentBlockDelta(index=1, input_json_delta=json_text[i:i + chunk]))
               for i in range(0, len(json_text), chunk)]
    return events + [m.StreamEvent(content_block_stop=m.ContentBlockStop(index=1))]


def _json_deltas(events: list[m.StreamEvent]) -> list[str]:
    return [e.content_block_delta.input_json_delta for e in events
            if e.WhichOneof("event") == "content_block_delta" and e.content_block_delta.input_json_delta]


def test_a_tool_calls_arguments_are_held_whole_and_redacted_as_json():
    import json

    args = '{"to": "jane.doe@example.com", "body": "call +44 20 7946 0958"}'
    out, out_filter = _run(_answer("Sending.", 4, _tool_call(args, 3)))
    (delivered,) = _json_deltas(out)
    assert json.loads(delivered) == {"to": "[EMAIL_1]", "body": "call [PHONE_1]"}
    assert set(out_filter.verdict().rule_ids) == {"pii.email", "pii.phone"}


def test_a_secret_in_a_tool_call_delivers_none_of_the_call():
    args = '{"header": "Bearer sk-ant-api03-' + "Q" * 40 + '"}'
    out, out_filter = _run(_answer("Calling the API.", 4, _tool_call(args, 5)))
    assert _json_deltas(out) == []
    assert out[-2].message_delta.stop_reason == REFUSAL and out_filter.stopped
