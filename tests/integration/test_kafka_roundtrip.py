"""One billing event produced to and consumed from a real Kafka broker."""

from __future__ import annotations

import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from sluice.events.v1 import events_pb2

pytestmark = pytest.mark.integration


def test_billing_event_round_trip(kafka_bootstrap):
    topic = f"sluice.billing.test-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, request_timeout_ms=20000)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()

    event = events_pb2.BillingEvent(
        event_id=uuid.uuid4().hex, request_id="req_test", tenant_id="acme", key_id="k1", region="local",
        model_requested="claude-sonnet-4-6", model_served="claude-sonnet-4-6",
        input_tokens=12, output_tokens=34, cache_read_input_tokens=5, cost_usd=0.000549,
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", enable_idempotence=True)
    metadata = producer.send(topic, key=b"acme", value=event.SerializeToString()).get(timeout=30)
    producer.close()
    assert metadata.topic == topic and metadata.offset == 0

    consumer = KafkaConsumer(topic, bootstrap_servers=kafka_bootstrap, group_id=f"g-{uuid.uuid4().hex[:6]}",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=20000)
    records = []
    for record in consumer:
        records.append(record)
        break
    consumer.close()

    assert len(records) == 1
    assert records[0].key == b"acme"
    assert events_pb2.BillingEvent.FromString(records[0].value) == event
