"""Event topics' partitions on a real Kafka broker: created with events.partitions, one
tenant per partition, skew measured, and sink consumers sharing the partitions (with a
rebalance mid-load) while each tenant's order and the audit chains hold."""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from kafka import KafkaConsumer

from sluice.config.sinks import SinksSettings
from sluice.events.kafka_forwarder import KafkaForwarder
from sluice.events.partitions import ensure_topics
from sluice.events.records import SpoolRecord, partition_for, region_topics, topic
from sluice.events.v1 import events_pb2 as ev
from sluice.runtime.cli import main
from sluice.sinks.consumer import RegionalSink
from sluice.sinks.kafka_source import KafkaSource
from sluice.sinks.storage import RegionalStore, partition_of
from sluice.telemetry import metrics
from tests.infra.kafka_broker import create_topics

pytestmark = pytest.mark.integration

PARTITIONS = 6
# 2026-11-18 12:00 UTC: every record of these tests falls on one day.
OCCURRED = 1_795_003_200


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls `condition` until true; fails naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _summary(region: str, tenant: str, seq: int) -> ev.RequestSummary:
    summary = ev.RequestSummary(
        request_id=f"req_{tenant}_{seq}",
        tenant_id=tenant,
        key_id="k",
        region=region,
        input_tokens=seq,
        output_tokens=1,
        outcome=ev.OUTCOME_OK,
    )
    summary.occurred_at.seconds = OCCURRED
    return summary


def _records(region: str, tenant: str, seq: int) -> list[SpoolRecord]:
    """One request's billing and audit records; `seq` orders the tenant's requests."""
    billing = ev.BillingEvent(event_id=f"b-{tenant}-{seq}", request=_summary(region, tenant, seq))
    audit = ev.AuditEvent(event_id=f"a-{tenant}-{seq}", request=_summary(region, tenant, seq))
    return [
        SpoolRecord("billing", tenant.encode(), billing.SerializeToString()),
        SpoolRecord("audit", tenant.encode(), audit.SerializeToString()),
    ]


def _skewed_load(region: str, requests: int, small: int = 30) -> list[SpoolRecord]:
    """One hot tenant with half of the requests, `small` tenants sharing the rest, interleaved."""
    seqs: Counter[str] = Counter()
    records = []
    for i in range(requests):
        tenant = "hot" if i % 2 == 0 else f"small{i // 2 % small:02d}"
        seqs[tenant] += 1
        records += _records(region, tenant, seqs[tenant])
    return records


def _send_all(forwarder: KafkaForwarder, records: list[SpoolRecord], batch: int = 100) -> None:
    for start in range(0, len(records), batch):
        chunk = records[start : start + batch]
        assert forwarder.send(chunk) == len(chunk)


def test_topics_are_created_with_the_configured_count_and_a_short_one_is_reported(
    kafka_bootstrap, caplog
):
    region = f"pt-{uuid.uuid4().hex[:8]}"
    short_topic = topic("billing", region)
    create_topics(kafka_bootstrap, [short_topic], partitions=2)  # made before, by someone else

    with caplog.at_level(logging.WARNING, logger="sluice.events.partitions"):
        states = {s.topic: s for s in ensure_topics(kafka_bootstrap, region, PARTITIONS, 1)}
    assert set(states) == set(region_topics(region))
    assert (
        states[short_topic].partitions,
        states[short_topic].created,
        states[short_topic].short,
    ) == (2, False, 4)
    for name in set(region_topics(region)) - {short_topic}:
        assert (states[name].partitions, states[name].created, states[name].short) == (
            PARTITIONS,
            True,
            0,
        )
    assert (
        metrics.REGISTRY.get_sample_value(
            "sluice_events_topic_partitions_short", {"topic": short_topic}
        )
        == 4
    )
    assert any(
        short_topic in r.getMessage() and "not repartitioned" in r.getMessage()
        for r in caplog.records
    )

    # The command: nothing created again, the short topic reported (exit 1) and left as it is.
    out, err = io.StringIO(), io.StringIO()
    code = main(
        [
            "events",
            "create-topics",
            "--region",
            region,
            "--bootstrap",
            kafka_bootstrap,
            "--partitions",
            str(PARTITIONS),
        ],
        out=out,
        err=err,
    )
    assert code == 1, err.getvalue()
    lines = {line.split()[0]: line for line in out.getvalue().splitlines()}
    assert "2 partition(s)" in lines[short_topic] and "not repartitioned" in lines[short_topic]
    assert all(
        f"{PARTITIONS} partition(s)  exists" in lines[t]
        for t in set(region_topics(region)) - {short_topic}
    )
    assert ensure_topics(kafka_bootstrap, region, PARTITIONS, 1)[0].partitions == 2


def test_each_tenant_maps_to_one_stable_partition_and_a_hot_tenant_shows_as_skew(kafka_bootstrap):
    region = f"sk-{uuid.uuid4().hex[:8]}"
    # The forwarder creates the topics itself, with the configured count, before its first send.
    forwarder = KafkaForwarder(
        region, kafka_bootstrap, send_timeout_s=30, partitions=PARTITIONS, replication_factor=1
    )
    records = _skewed_load(region, 600)
    try:
        _send_all(forwarder, records)
    finally:
        forwarder.close()
    assert all(
        s.partitions == PARTITIONS and not s.created
        for s in ensure_topics(kafka_bootstrap, region, 6, 1)
    )

    billing = topic("billing", region)
    consumer = KafkaConsumer(
        billing,
        bootstrap_servers=kafka_bootstrap,
        group_id=f"g-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    seen = []
    for record in consumer:
        seen.append(record)
        if len(seen) == len(records) // 2:
            break
    consumer.close()
    by_tenant: dict[bytes, set[int]] = defaultdict(set)
    for record in seen:
        by_tenant[record.key].add(record.partition)
    # One tenant, one partition: the one records.partition_for names (Kafka's default partitioner).
    assert all(parts == {partition_for(key, PARTITIONS)} for key, parts in by_tenant.items())

    hot = partition_for(b"hot", PARTITIONS)
    produced = {
        p: metrics.REGISTRY.get_sample_value(
            "sluice_events_partition_records_total", {"topic": billing, "partition": str(p)}
        )
        or 0
        for p in range(PARTITIONS)
    }
    assert sum(produced.values()) == len(records) // 2
    assert max(produced, key=produced.__getitem__) == hot
    skew = metrics.REGISTRY.get_sample_value("sluice_events_partition_skew", {"topic": billing})
    # The hot tenant has half the records: its partition takes over half, >= 3x an even share.
    expected = produced[hot] * PARTITIONS / sum(produced.values())
    assert skew == pytest.approx(expected) and skew >= 3.0, produced
    print(
        f"\nbilling records per partition {produced}; skew {skew:.2f} "
        f"(1.0 = even, {PARTITIONS} = one partition)"
    )


def test_consumers_share_partitions_and_a_rebalance_mid_load_keeps_order_and_chains(
    kafka_bootstrap, tmp_path
):
    region = f"rb-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, region, PARTITIONS, 1)
    settings = SinksSettings(
        group_id=f"sinks-{uuid.uuid4().hex[:6]}", batch_max_records=25, poll_timeout_ms=100
    )
    stored_by: Counter[int] = Counter()
    lock = threading.Lock()
    sinks: list[RegionalSink] = []

    def start_consumer() -> RegionalSink:
        member = len(sinks)

        def counted(stored: int, _duplicates: int, _dead: int) -> None:
            with lock:
                stored_by[member] += stored

        sink = RegionalSink(
            region,
            KafkaSource(region, kafka_bootstrap, settings, member),
            settings,
            RegionalStore(tmp_path, region),
            on_batch=counted,
            name=f"test-sink-{member}",
        )
        sinks.append(sink)
        sink.start()
        return sink

    forwarder = KafkaForwarder(region, kafka_bootstrap, send_timeout_s=30)
    seqs: Counter[str] = Counter()
    produced: list[SpoolRecord] = []
    enough = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        # Small batches until told the consumers have all joined, and some more after.
        try:
            extra = 0
            while extra < 40:
                batch = []
                for i in range(10):
                    tenant = "hot" if i % 2 == 0 else f"small{(len(produced) // 2 + i) % 20:02d}"
                    seqs[tenant] += 1
                    batch += _records(region, tenant, seqs[tenant])
                assert forwarder.send(batch) == len(batch)
                produced.extend(batch)
                if enough.is_set():
                    extra += 1
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            failure.append(exc)

    def stored_total() -> int:
        with lock:
            return sum(stored_by.values())

    producer = threading.Thread(target=produce, daemon=True)
    try:
        first = start_consumer()
        producer.start()
        _wait(lambda: stored_total() > 100, 60, "the first consumer to store records")
        # Consumers join while records flow: each join rebalances the group.
        second = start_consumer()
        _wait(lambda: bool(second.source.assigned), 60, "the second consumer's partitions")
        third = start_consumer()
        _wait(lambda: all(s.source.assigned for s in sinks), 60, "every consumer's partitions")
        _wait(
            lambda: stored_by[2] > 0 and stored_by[1] > 0, 60, "the new consumers to store records"
        )
        enough.set()
        producer.join(120)
        assert not producer.is_alive() and not failure, failure
        _wait(lambda: stored_total() >= len(produced), 120, "every record to be stored")
        owned = [s.source.assigned for s in sinks]
    finally:
        enough.set()
        for sink in sinks:
            sink.request_stop()
        for sink in sinks:
            sink.stop(30)
        forwarder.close()

    # Each consumer owned partitions of its own (6 per topic among 3: 2 each), none shared.
    assert all(len(parts) == 2 * 3 for parts in owned), owned
    assert sum(len(parts) for parts in owned) == len(set().union(*owned)) == 3 * PARTITIONS
    assert all(stored_by[m] > 0 for m in range(3)), stored_by
    assert first.source is not None and third.source is not None

    store = RegionalStore(tmp_path, region)
    for kind in ("billing", "audit"):
        events = list(store.events(kind))
        ids = Counter(e["event_id"] for e in events)
        assert len(ids) == len(produced) // 2 and max(ids.values()) == 1, kind  # every record once
        for tenant, count in seqs.items():
            files = [path for _, _, path in store.files(kind, tenant)]
            # One file per tenant: its partition's chain, in the order it was produced.
            assert [partition_of(p) for p in files] == [
                partition_for(tenant.encode(), PARTITIONS)
            ], files
            order = [int(e["request"]["input_tokens"]) for e in store.events(kind, tenant)]
            assert order == list(range(1, count + 1)), (kind, tenant)

    out, err = io.StringIO(), io.StringIO()
    assert (
        main(["audit", "verify", "--region", region, "--data-dir", str(tmp_path)], out=out, err=err)
        == 0
    ), out.getvalue() + err.getvalue()
    assert f"{len(produced) // 2} record(s)" in out.getvalue()
    print(
        f"\nstored per consumer {dict(stored_by)} of {len(produced)}; "
        f"owned {[len(o) for o in owned]}"
    )
