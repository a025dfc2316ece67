"""Events through a real Kafka broker: the gateway's forwarder writes what the sink's decoder reads."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer

from sluice.events.kafka_forwarder import KafkaForwarder
from sluice.events.records import SpoolRecord, decode, region_topics, topic
from sluice.events.v1 import events_pb2 as ev
from tests.infra.kafka_broker import create_topics

pytestmark = pytest.mark.integration


def test_forwarded_events_round_trip_keyed_by_tenant_with_schema_headers(kafka_bootstrap):
    region = f"it-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_bootstrap, region_topics(region))
    events = [ev.BillingEvent(event_id=uuid.uuid4().hex, request=ev.RequestSummary(
        request_id=f"req_{i}", tenant_id="acme", key_id="k1", region=region, model_requested="claude-sonnet-4-6",
        model_served="claude-sonnet-4-6", input_tokens=12 + i, output_tokens=34, cache_read_input_tokens=5,
        cost_usd=0.000549)) for i in range(5)]
    forwarder = KafkaForwarder(region, kafka_bootstrap, send_timeout_s=30)
    try:
        acked = forwarder.send([SpoolRecord("billing", b"acme", e.SerializeToString()) for e in events])
    finally:
        forwarder.close()
    assert acked == len(events)

    consumer = KafkaConsumer(topic("billing", region), bootstrap_servers=kafka_bootstrap,
                             group_id=f"g-{uuid.uuid4().hex[:6]}", auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20000)
    records = []
    for record in consumer:
        records.append(record)
        if len(records) == len(events):
            break
    consumer.close()

    assert {r.key for r in records} == {b"acme"}
    assert len({r.partition for r in records}) == 1  # one tenant, one partition: ordered
    decoded = [decode(r.headers, r.value) for r in sorted(records, key=lambda r: r.offset)]
    assert [kind for kind, _ in decoded] == ["billing"] * len(events)
    assert [event for _, event in decoded] == events


def test_forwarder_reports_nothing_acknowledged_when_kafka_is_unreachable():
    # A closed port: nothing listens, so nothing can be acknowledged.
    from tests.infra.processes import free_port

    forwarder = KafkaForwarder("nowhere", f"127.0.0.1:{free_port()}", send_timeout_s=2)
    try:
        assert forwarder.send([SpoolRecord("billing", b"acme", b"x")]) == 0
    finally:
        forwarder.close()
