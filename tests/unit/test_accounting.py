"""What a finished request becomes: one billing and one audit event, priced and explained."""

from __future__ import annotations

import hashlib
import json
from typing import ClassVar

import pytest

from sluice.auth.v1 import principal_pb2
from sluice.config import ConfigError, load
from sluice.events.emitter import EventEmitter
from sluice.events.spool import Spool, pending_records
from sluice.events.v1 import events_pb2 as ev
from sluice.gateway.accounting import COUNT_TOKENS, EventRecorder, RequestRecord
from sluice.routing.v1 import candidate_pb2
from sluice.safety.v1 import verdict_pb2
from sluice.wire.events import Event
from sluice.wire.request import MessagesRequest


def _candidate(model: str, input_price: float) -> candidate_pb2.Candidate:
    return candidate_pb2.Candidate(model_id=model, prices=candidate_pb2.Prices(
        input=input_price, output=15, cache_write_5m=3.75, cache_write_1h=6, cache_read=0.3,
        server_tool_use={"web_search_requests": 0.01}))


BODY = {"model": "claude-opus-4-7", "max_tokens": 64, "system": [{"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "My email is a@b.c"}]}]}


def _record(mode: str = "hash", body: dict | None = None, operation: str = "messages") -> RequestRecord:
    principal = principal_pb2.Principal(tenant_id="acme", key_id="k1", tier="standard", region="eu",
                                        audit_content=mode)
    request = MessagesRequest(json.dumps(body or BODY).encode(), "2026-10-21", ("beta-a",),
                              count_tokens=operation == COUNT_TOKENS)
    return RequestRecord(principal, request, operation)


def _recorded(tmp_path, record: RequestRecord, outcome=ev.OUTCOME_OK, reason="") -> tuple[ev.BillingEvent, ev.AuditEvent]:
    emitter = EventEmitter("eu", Spool(tmp_path, 1 << 20, 1 << 20), None, queue_max=10, batch_max=10, retry_s=1,
                           alarm_ratio=0.8)
    emitter.start()
    EventRecorder(emitter).finish(record, outcome, reason)
    emitter.stop(1)  # no Kafka: both events stay in the spool
    billing, audit = pending_records(tmp_path)
    assert (billing.kind, audit.kind) == ("billing", "audit") and billing.key == b"acme"
    return ev.BillingEvent.FromString(billing.value), ev.AuditEvent.FromString(audit.value)


def _stream(record: RequestRecord, model: str, words: list[str], usage: dict | None,
            start_usage: dict | None = None) -> None:
    record.observe(Event.of({"type": "message_start", "message": {
        "model": model, "usage": start_usage or {"input_tokens": (usage or {}).get("input_tokens", 12),
                                                 "output_tokens": 1}}}))
    for word in words:
        record.observe(Event.of({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": word}}))
    if usage is not None:
        record.observe(Event.of({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage}))


def test_cost_prices_input_output_and_cache_separately_and_names_fallbacks(tmp_path):
    record = _record()
    record.candidates = [_candidate("claude-opus-4-7", 5), _candidate("claude-sonnet-4-6", 3)]
    record.catalog_version = "v-test"
    usage = {"input_tokens": 1000, "output_tokens": 200, "cache_creation_input_tokens": 400,
             "cache_read_input_tokens": 800}
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
    assert s.anthropic_version == "2026-10-21" and list(s.anthropic_beta) == ["beta-a"] and s.operation == "messages"


def test_usage_reaches_billing_whole_and_prices_1h_writes_and_server_tools(tmp_path):
    record = _record()
    record.candidates = [_candidate("claude-opus-4-7", 5)]
    usage = {"input_tokens": 100, "output_tokens": 10, "cache_creation_input_tokens": 300,
             "cache_creation": {"ephemeral_5m_input_tokens": 100, "ephemeral_1h_input_tokens": 200},
             "server_tool_use": {"web_search_requests": 3, "web_fetch_requests": 1},
             "service_tier": "priority", "inference_geo": "us"}
    _stream(record, "claude-opus-4-7", ["ok"], usage)
    s = _recorded(tmp_path, record)[0].request
    assert (s.cache_creation_5m_input_tokens, s.cache_creation_1h_input_tokens) == (100, 200)
    assert dict(s.server_tool_use) == {"web_search_requests": 3, "web_fetch_requests": 1}
    assert (s.service_tier, s.inference_geo) == ("priority", "us")
    # web_fetch has no per-request price in this candidate: tokens only.
    assert s.cost_usd == pytest.approx((100 * 5 + 10 * 15 + 100 * 3.75 + 200 * 6) / 1e6 + 3 * 0.01)


def test_cache_writes_without_a_breakdown_are_priced_by_the_requests_ttl(tmp_path):
    body = dict(BODY, system=[{"type": "text", "text": "rules " * 2000, "cache_control": {"type": "ephemeral",
                                                                                         "ttl": "1h"}}])
    record = _record(body=body)
    record.candidates = [_candidate("claude-opus-4-7", 5)]
    _stream(record, "claude-opus-4-7", ["ok"], {"input_tokens": 10, "output_tokens": 2,
                                                 "cache_creation_input_tokens": 3000})
    s = _recorded(tmp_path, record)[0].request
    assert (s.cache_creation_5m_input_tokens, s.cache_creation_1h_input_tokens) == (0, 3000)
    assert s.cost_usd == pytest.approx((10 * 5 + 2 * 15 + 3000 * 6) / 1e6)


def test_a_failed_stream_is_billed_the_output_the_upstream_reported(tmp_path):
    record = _record()
    record.candidates = [_candidate("claude-opus-4-7", 5)]
    _stream(record, "claude-opus-4-7", ["w"], {"output_tokens": 40})  # then the stream failed
    s = _recorded(tmp_path, record, ev.OUTCOME_ERROR, "UPSTREAM_OVERLOADED")[0].request
    assert s.output_tokens == 40 and s.input_tokens == 12
    assert s.cost_usd == pytest.approx((12 * 5 + 40 * 15) / 1e6)


def test_count_tokens_is_recorded_and_free(tmp_path):
    record = _record(operation=COUNT_TOKENS, body={k: v for k, v in BODY.items() if k != "max_tokens"})
    record.candidates = [_candidate("claude-opus-4-7", 5)]
    record.served_model, record.counted_tokens = "claude-opus-4-7", 321
    s = _recorded(tmp_path, record)[0].request
    assert (s.operation, s.input_tokens, s.cost_usd) == ("count_tokens", 321, 0)


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
    record.redacted = record.request.with_edits([(("messages", 0, "content", 0, "text"), "My email is [EMAIL_1]")])
    _stream(record, "claude-opus-4-7", ["Noted", "."], {"input_tokens": 5, "output_tokens": 2})
    _, audit = _recorded(tmp_path, record)
    original = record.request.prompt_text()
    assert audit.prompt.sha256 == hashlib.sha256(record.request.raw).hexdigest()
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


def test_header_bytes_that_are_not_utf8_are_recorded_not_dropped(tmp_path):
    """The HTTP layer keeps such bytes surrogate-escaped; the record keeps U+FFFD."""
    principal = principal_pb2.Principal(tenant_id="acme", key_id="k1", tier="standard", region="eu")
    request = MessagesRequest.unparsed(b"{}", "2023-06-01\udcff", ("beta-\udcff",))
    billing, audit = _recorded(tmp_path, RequestRecord(principal, request), ev.OUTCOME_ERROR, "INVALID_REQUEST")
    assert billing.request.anthropic_version == "2023-06-01\ufffd"
    assert list(audit.request.anthropic_beta) == ["beta-\ufffd"]


def test_a_response_cache_hit_costs_nothing_and_records_the_saving(tmp_path):
    record = _record()
    record.candidates = [_candidate("claude-opus-4-7", 5)]
    record.cache_status, record.cache_origin = "hit", "req-origin"
    _stream(record, "claude-opus-4-7", ["4", "2"], {"input_tokens": 1000, "output_tokens": 100})
    billed = _recorded(tmp_path, record)[0].request
    assert (billed.cost_usd, billed.input_tokens, billed.output_tokens) == (0, 0, 0)
    assert billed.cache.origin_request_id == "req-origin"
    assert billed.cache.saved_usd == pytest.approx((1000 * 5 + 100 * 15) / 1e6)
    failed = _record()
    failed.candidates, failed.cache_status = [_candidate("claude-opus-4-7", 5)], "hit"
    _stream(failed, "claude-opus-4-7", ["4"], {"input_tokens": 1000, "output_tokens": 100})
    assert _recorded(tmp_path / "f", failed, ev.OUTCOME_ERROR, "UPSTREAM_ERROR")[0].request.cache.saved_usd == 0


def test_one_pricing_rule_in_whole_micro_usd_rounded_up():
    """Spend limits, billing and routing's estimates share cost_micro_usd: integer micro-USD,
    rounded up, without float noise turning an exact price into one micro-USD more."""
    from sluice.catalog.pricing import cost_micro_usd, usd
    from sluice.llm.v1 import messages_pb2

    class P:
        input, output, cache_write_5m, cache_write_1h, cache_read = 0.1, 15.0, 3.75, 6.0, 0.3
        server_tool_use: ClassVar[dict[str, float]] = {"web_search_requests": 0.01}

    assert cost_micro_usd(messages_pb2.Usage(input_tokens=3), P) == 1  # 0.3 micro-USD -> 1
    assert cost_micro_usd(messages_pb2.Usage(input_tokens=30), P) == 3  # 3.0000000000000004 is 3
    usage = messages_pb2.Usage(input_tokens=1000, output_tokens=200, cache_read_input_tokens=800)
    usage.server_tool_use["web_search_requests"] = 2
    micro = cost_micro_usd(usage, P)
    assert isinstance(micro, int) and micro == 100 + 3000 + 240 + 20_000
    assert usd(micro) == pytest.approx(0.02334)
