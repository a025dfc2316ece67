"""What a finished request becomes: one billing and one audit event, priced and explained."""

from __future__ import annotations

import hashlib

import pytest

from sluice.auth.v1 import principal_pb2
from sluice.config import ConfigError, load
from sluice.events.emitter import EventEmitter
from sluice.events.spool import Spool, pending_records
from sluice.events.v1 import events_pb2 as ev
from sluice.gateway.accounting import EventRecorder, RequestRecord, prompt_text
from sluice.llm.v1 import messages_pb2 as m
from sluice.routing.v1 import candidate_pb2
from sluice.safety.v1 import verdict_pb2


def _candidate(model: str, input_price: float) -> candidate_pb2.Candidate:
    return candidate_pb2.Candidate(model_id=model, prices=candidate_pb2.Prices(
        input=input_price, output=15, cache_write_5m=3.75, cache_write_1h=6, cache_read=0.3))


def _record(mode: str = "hash") -> RequestRecord:
    principal = principal_pb2.Principal(tenant_id="acme", key_id="k1", tier="standard", region="eu",
                                        audit_content=mode)
    params = m.MessageParams(model="claude-opus-4-7", max_tokens=64,
                             system=[m.ContentBlock(text=m.TextBlock(text="Be brief."))],
                             messages=[m.Message(role=m.ROLE_USER,
                                                 content=[m.ContentBlock(text=m.TextBlock(text="My email is a@b.c"))])])
    return RequestRecord(principal, params)


def _recorded(tmp_path, record: RequestRecord, outcome=ev.OUTCOME_OK, reason="") -> tuple[ev.BillingEvent, ev.AuditEvent]:
    emitter = EventEmitter("eu", Spool(tmp_path, 1 << 20, 1 << 20), None, queue_max=10, batch_max=10, retry_s=1,
                           alarm_ratio=0.8)
    emitter.start()
    EventRecorder(emitter).finish(record, outcome, reason)
    emitter.stop(1)  # no Kafka: both events stay in the spool
    billing, audit = pending_records(tmp_path)
    assert (billing.kind, audit.kind) == ("billing", "audit") and billing.key == b"acme"
    return ev.BillingEvent.FromString(billing.value), ev.AuditEvent.FromString(audit.value)


def _stream(record: RequestRecord, model: str, words: list[str], usage: m.Usage | None) -> None:
    record.observe(m.StreamEvent(message_start=m.MessageStart(message=m.AssistantMessage(
        model=model, usage=m.Usage(input_tokens=usage.input_tokens if usage else 12, output_tokens=1)))))
    for word in words:
        record.observe(m.StreamEvent(content_block_delta=m.ContentBlockDelta(text_delta=word)))
    if usage is not None:
        record.observe(m.StreamEvent(message_delta=m.MessageDelta(stop_reason="end_turn", usage=usage)))


def test_cost_prices_input_output_and_cache_separately_and_names_fallbacks(tmp_path):
    record = _record()
    record.candidates = [_candidate("claude-opus-4-7", 5), _candidate("claude-sonnet-4-6", 3)]
    record.catalog_version = "v-test"
    usage = m.Usage(input_tokens=1000, output_tokens=200, cache_creation_input_tokens=400, cache_read_input_tokens=800)
    _stream(record, "claude-sonnet-4-6", ["Hello", " there"], usage)
    billing, audit = _recorded(tmp_path, record)
    s = billing.request
    assert s.model_requested == "claude-opus-4-7" and s.model_served == "claude-sonnet-4-6"
    assert list(s.fallbacks) == ["claude-opus-4-7"]
    assert s.cost_usd == pytest.approx((1000 * 3 + 200 * 15 + 400 * 3.75 + 800 * 0.3) / 1e6)
    assert (s.input_tokens, s.output_tokens, s.cache_creation_input_tokens, s.cache_read_input_tokens) == (1000, 200, 400, 800)
    assert s.catalog_version == "v-test" and s.region == "eu" and s.outcome == ev.OUTCOME_OK
    assert s.time_to_first_token_ms > 0 and s.total_ms >= s.time_to_first_token_ms
    assert audit.request == billing.request and audit.event_id != billing.event_id


def test_a_cancelled_stream_is_billed_the_output_it_delivered(tmp_path):
    record = _record()
    record.candidates = [_candidate("claude-opus-4-7", 5)]
    _stream(record, "claude-opus-4-7", ["word "] * 40, usage=None)
    billing, _ = _recorded(tmp_path, record, ev.OUTCOME_CANCELLED)
    assert billing.request.outcome == ev.OUTCOME_CANCELLED
    assert billing.request.output_tokens >= 40 and billing.request.cost_usd > 0


def test_a_refused_request_is_recorded_with_its_reason_and_no_cost(tmp_path):
    record = _record()
    record.refusal_reason = "RATE_LIMITED"
    billing, audit = _recorded(tmp_path, record, ev.OUTCOME_ERROR, "RATE_LIMITED")
    assert billing.request.error_reason == "RATE_LIMITED" and billing.request.cost_usd == 0
    assert not audit.auth.admitted and audit.auth.refusal_reason == "RATE_LIMITED"


@pytest.mark.parametrize("mode", ["hash", "redacted", "full"])
def test_audit_content_follows_the_tenants_policy(tmp_path, mode):
    record = _record(mode)
    record.verdict = verdict_pb2.Verdict(action=verdict_pb2.ACTION_REDACT, rule_ids=["pii.email"], policy_version="p1")
    redacted = m.MessageParams()
    redacted.CopyFrom(record.params)
    redacted.messages[0].content[0].text.text = "My email is [EMAIL_1]"
    record.redacted_params = redacted
    _stream(record, "claude-opus-4-7", ["Noted", "."], m.Usage(input_tokens=5, output_tokens=2))
    _, audit = _recorded(tmp_path, record)
    original = prompt_text(record.params)
    assert audit.prompt.sha256 == hashlib.sha256(record.params.SerializeToString(deterministic=True)).hexdigest()
    assert audit.completion.sha256 == hashlib.sha256(b"Noted.").hexdigest()
    assert audit.prompt.chars == len(original) and audit.prompt.mode == mode
    assert list(audit.safety_verdict.rule_ids) == ["pii.email"] and audit.safety_verdict.policy_version == "p1"
    if mode == "hash":
        assert audit.prompt.text == "" and audit.completion.text == ""
    elif mode == "redacted":
        assert "[EMAIL_1]" in audit.prompt.text and "a@b.c" not in audit.prompt.text
    else:
        assert audit.prompt.text == original == "system: Be brief.\n\nuser: My email is a@b.c"
        assert audit.completion.text == "Noted."


def test_events_settings_are_validated_by_name():
    with pytest.raises(ConfigError) as err:
        load(overrides={"region": "EU West", "events": {"kafka_bootstrap": "kafka", "spool_max_bytes": 10}})
    text = str(err.value)
    assert "region" in text and "events.kafka_bootstrap" in text and "events.spool_max_bytes" in text
