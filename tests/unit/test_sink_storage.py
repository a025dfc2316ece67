"""Regional storage: durable, de-duplicated, and audit chains that show tampering."""

from __future__ import annotations

import json
from collections import namedtuple

from sluice.events.records import kafka_headers
from sluice.events.v1 import events_pb2 as ev
from sluice.sinks import report
from sluice.sinks.consumer import classify
from sluice.sinks.storage import RegionalStore

DAY_S = 1_795_000_000  # 2026-11-18 UTC


def _summary(i: int, tenant: str = "acme", region: str = "eu", model: str = "claude-haiku-4-5") -> ev.RequestSummary:
    s = ev.RequestSummary(request_id=f"req_{i}", tenant_id=tenant, region=region, model_served=model,
                          input_tokens=10 + i, output_tokens=20, cache_read_input_tokens=3, cost_usd=0.001,
                          outcome=ev.OUTCOME_OK)
    s.occurred_at.seconds = DAY_S + i
    return s


def _audit(i: int, **kw) -> ev.AuditEvent:
    return ev.AuditEvent(event_id=f"a{i}", request=_summary(i, **kw),
                         prompt=ev.ContentRecord(mode="hash", sha256="00" * 32, chars=5))


def _billing(i: int, **kw) -> ev.BillingEvent:
    return ev.BillingEvent(event_id=f"b{i}", request=_summary(i, **kw))


def _store(tmp_path) -> RegionalStore:
    return RegionalStore(tmp_path, "eu")


def test_redelivered_events_are_stored_once_even_after_a_restart(tmp_path):
    store = _store(tmp_path)
    assert store.write([("billing", _billing(i)) for i in range(5)]) == (5, 0)
    assert store.write([("billing", _billing(i)) for i in range(3, 8)]) == (3, 2)
    again = _store(tmp_path)  # a restarted sink knows what its files hold
    assert again.write([("billing", _billing(i)) for i in range(8)]) == (0, 8)
    assert sorted(e["event_id"] for e in again.events("billing")) == [f"b{i}" for i in range(8)]


def test_a_line_torn_by_a_crash_is_cut_and_the_event_stored_again(tmp_path):
    store = _store(tmp_path)
    store.write([("audit", _audit(i)) for i in range(3)])
    path = store.path("audit", "acme", "2026-11-18")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]) + lines[2][:40])  # the third line half written
    again = _store(tmp_path)
    assert again.write([("audit", _audit(i)) for i in range(3)]) == (1, 2)
    assert again.verify_audit() == []


def test_audit_verification_passes_on_untouched_chains(tmp_path):
    store = _store(tmp_path)
    store.write([("audit", _audit(i)) for i in range(6)] + [("audit", _audit(9, tenant="globex"))])
    assert store.verify_audit() == []


def _chained(tmp_path):
    store = _store(tmp_path)
    store.write([("audit", _audit(i)) for i in range(6)])
    path = store.path("audit", "acme", "2026-11-18")
    return store, path, path.read_text().splitlines(keepends=True)


def test_an_edited_audit_record_is_named(tmp_path):
    store, path, lines = _chained(tmp_path)
    doc = json.loads(lines[3])
    doc["event"]["request"]["output_tokens"] = "1"
    lines[3] = json.dumps(doc) + "\n"
    path.write_text("".join(lines))
    problems = store.verify_audit()
    assert len(problems) == 1
    assert f"{path}:4" in problems[0] and "edited" in problems[0] and "a3" in problems[0]


def test_a_removed_audit_record_is_named(tmp_path):
    store, path, lines = _chained(tmp_path)
    path.write_text("".join(lines[:2] + lines[3:]))
    problems = store.verify_audit()
    assert any(f"{path}:3" in p and "a3" in p and "removed" in p for p in problems), problems


def test_reordered_audit_records_are_named(tmp_path):
    store, path, lines = _chained(tmp_path)
    lines[1], lines[2] = lines[2], lines[1]
    path.write_text("".join(lines))
    problems = store.verify_audit()
    assert any(f"{path}:2" in p and "a2" in p for p in problems), problems
    assert any(f"{path}:3" in p and "a1" in p for p in problems), problems


def test_records_cut_off_the_end_are_detected(tmp_path):
    store, path, lines = _chained(tmp_path)
    path.write_text("".join(lines[:-1]))
    problems = store.verify_audit()
    assert len(problems) == 1 and "head records 6" in problems[0]


def test_billing_report_sums_per_model_per_day(tmp_path):
    store = _store(tmp_path)
    store.write([("billing", _billing(i)) for i in range(3)]
                + [("billing", _billing(10, model="claude-opus-4-7"))]
                + [("billing", _billing(20, tenant="globex"))])
    lines = report.report(store, "acme", "2026-11-01", "2026-11-30")
    assert [(line.day, line.model, line.requests) for line in lines] == [
        ("2026-11-18", "claude-haiku-4-5", 3), ("2026-11-18", "claude-opus-4-7", 1)]
    haiku = lines[0]
    assert (haiku.input_tokens, haiku.output_tokens, haiku.cache_read_input_tokens) == (33, 60, 9)
    assert abs(haiku.cost_usd - 0.003) < 1e-12
    assert report.report(store, "acme", "2026-11-19", "2026-11-30") == []
    assert "total" in report.render(lines)


Record = namedtuple("Record", "topic partition offset key value headers")


def test_unreadable_or_misplaced_records_are_dead_lettered_with_the_reason():
    good = Record("sluice.billing.eu", 0, 1, b"acme", _billing(1).SerializeToString(), kafka_headers("billing"))
    records = [
        good,
        Record("sluice.billing.eu", 0, 2, b"acme", b"\xff\xfe not protobuf", kafka_headers("billing")),
        Record("sluice.billing.eu", 0, 3, b"acme", good.value, [("sluice-event-type", b"billing"),
                                                               ("sluice-schema-version", b"7")]),
        Record("sluice.billing.eu", 0, 4, b"acme", good.value, []),
        Record("sluice.billing.eu", 0, 5, b"x", _billing(2, region="us").SerializeToString(),
               kafka_headers("billing")),
        Record("sluice.audit.eu", 0, 6, b"acme", good.value, kafka_headers("billing")),
        Record("sluice.billing.eu", 0, 7, b"x", _billing(3, tenant="../../etc").SerializeToString(),
               kafka_headers("billing")),
    ]
    stored, dead = classify("eu", records)
    assert [e.event_id for _, e in stored] == ["b1"]
    reasons = [reason for _, reason in dead]
    assert "does not decode" in reasons[0] or "lacks event_id" in reasons[0]
    assert "unsupported schema version '7'" in reasons[1]
    assert "missing header sluice-event-type" in reasons[2]
    assert "region 'us'" in reasons[3]
    assert "billing event on topic sluice.audit.eu" in reasons[4]
    assert "invalid tenant id" in reasons[5]  # never a path outside the region's storage
