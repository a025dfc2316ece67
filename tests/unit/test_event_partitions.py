"""Partitioning of event topics, the pure parts: tenant -> partition, skew over a window,
per-partition chains, and two sink consumers' stores appending to one chain in turn."""

from __future__ import annotations

from collections import namedtuple

import pytest
from kafka.partitioner.default import DefaultPartitioner
from pydantic import ValidationError

from sluice.config.events import EventsSettings
from sluice.config.sinks import SinksSettings
from sluice.events.partitions import SkewMeter
from sluice.events.records import kafka_headers, partition_for
from sluice.events.v1 import events_pb2 as ev
from sluice.sinks import audit_chain
from sluice.sinks.consumer import classify
from sluice.sinks.storage import RegionalStore, partition_of

DAY_S = 1_795_000_000  # 2026-11-18 UTC
DAY = "2026-11-18"


def _audit(i: int, tenant: str = "acme") -> ev.AuditEvent:
    summary = ev.RequestSummary(
        request_id=f"req_{i}", tenant_id=tenant, region="eu", input_tokens=i
    )
    summary.occurred_at.seconds = DAY_S
    return ev.AuditEvent(event_id=f"a{i}", request=summary)


class _Cluster:
    """What kafka-python's DefaultPartitioner asks of its cluster metadata."""

    def __init__(self, partitions: int) -> None:
        self._partitions = set(range(partitions))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return self._partitions

    def available_partitions_for_topic(self, _topic: str) -> set[int]:
        return self._partitions


def test_a_tenant_maps_to_the_partition_kafkas_default_partitioner_picks_and_always_the_same():
    tenants = [f"tenant{i}".encode() for i in range(200)] + [b"acme", b"hot", b""]
    for partitions in (1, 3, 6, 12, 64):
        cluster = _Cluster(partitions)
        for key in tenants:
            expected = DefaultPartitioner().partition("t", key, key, None, None, cluster)
            assert partition_for(key, partitions) == expected
    # Pinned: a change of hash (a different client's partitioner) would move every tenant.
    assert [partition_for(t, 12) for t in (b"acme", b"hot", b"globex")] == [0, 6, 7]
    assert all(partition_for(t, 12) == _murmur_reference(t, 12) for t in tenants)
    # Spread: 200 tenants over 12 partitions leave none empty.
    assert len({partition_for(t, 12) for t in tenants}) == 12
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"acme", 0)


def _murmur_reference(key: bytes, partitions: int) -> int:
    """Java's Utils.murmur2 (Kafka's default partitioner), written out independently."""
    m, seed = 0x5BD1E995, 0x9747B28C
    h = (seed ^ len(key)) & 0xFFFFFFFF
    for i in range(len(key) // 4):
        k = int.from_bytes(key[i * 4 : i * 4 + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = key[len(key) // 4 * 4 :]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h = ((h ^ tail[0]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def test_skew_is_the_busiest_partitions_share_over_an_even_share_within_the_window():
    now = [0.0]
    meter = SkewMeter(window_s=60, buckets=6, clock=lambda: now[0])
    assert meter.skew("t", 4) == 0.0  # nothing sent
    meter.add("t", {0: 25, 1: 25, 2: 25, 3: 25})
    assert meter.skew("t", 4) == pytest.approx(1.0)  # even
    now[0] = 30.0
    meter.add("t", {2: 300})  # a hot tenant on partition 2
    assert meter.skew("t", 4) == pytest.approx(325 / 400 * 4)
    now[0] = 65.0  # the even slice has left the window; the hot one has not
    assert meter.skew("t", 4) == pytest.approx(4.0)
    now[0] = 200.0
    assert meter.skew("t", 4) == 0.0
    assert meter.skew("other", 4) == 0.0
    with pytest.raises(ValueError):
        meter.skew("t", 0)
    with pytest.raises(ValueError):
        SkewMeter(window_s=0)


def test_partition_settings_have_defaults_and_bounds():
    assert EventsSettings().partitions == 12 and EventsSettings().replication_factor == -1
    assert SinksSettings().consumers == 1
    for bad in (
        {"partitions": 0},
        {"partitions": 5000},
        {"replication_factor": 0},
        {"skew_window_seconds": 0},
    ):
        with pytest.raises(ValidationError):
            EventsSettings(**bad)
    with pytest.raises(ValidationError):
        SinksSettings(consumers=0)


def test_each_partition_has_its_own_chain_whose_genesis_names_it(tmp_path):
    store = RegionalStore(tmp_path, "eu")
    store.write(
        [
            ("audit", _audit(1), 3),
            ("audit", _audit(2), 3),
            ("audit", _audit(3), 5),
            ("audit", _audit(4)),
        ]
    )
    names = sorted(p.name for _, _, p in store.files("audit", "acme"))
    assert names == [f"{DAY}.jsonl", f"{DAY}.p3.jsonl", f"{DAY}.p5.jsonl"]
    assert [(day, partition_of(p)) for _, day, p in store.files("audit")] == [
        (DAY, None),
        (DAY, 3),
        (DAY, 5),
    ]
    assert store.verify_audit() == []
    # A partition's chain moved under another partition's name does not verify.
    p3, p5 = store.path("audit", "acme", DAY, 3), store.path("audit", "acme", DAY, 5)
    assert audit_chain.genesis("eu", "acme", DAY, 3) != audit_chain.genesis("eu", "acme", DAY, 5)
    p5.write_text(p3.read_text().splitlines(keepends=True)[0])
    problems = store.verify_audit()
    assert problems and all(str(p5) in problem for problem in problems)


def test_partitions_sort_numerically_within_a_day(tmp_path):
    store = RegionalStore(tmp_path, "eu")
    store.write([("audit", _audit(i), p) for i, p in enumerate((10, 2, 0))])
    assert [partition_of(p) for *_, p in store.files("audit")] == [0, 2, 10]


def test_two_consumers_stores_taking_a_partition_in_turn_keep_one_valid_chain(tmp_path):
    """A rebalance moves partition 3 from consumer A to B and back: each store's cached tail
    is stale when the other has appended, so it reads the file again and continues the chain
    from disk, skipping what the other stored (a batch redelivered after the move)."""
    a, b = RegionalStore(tmp_path, "eu"), RegionalStore(tmp_path, "eu")
    assert a.write([("audit", _audit(i), 3) for i in range(5)]) == (5, 0)
    assert b.write([("audit", _audit(i), 3) for i in range(3, 9)]) == (4, 2)  # 3 and 4 redelivered
    assert a.write([("audit", _audit(i), 3) for i in range(7, 12)]) == (3, 2)  # a's cache was stale
    assert a.verify_audit() == []
    stored = [e["event_id"] for e in a.events("audit")]
    assert stored == [f"a{i}" for i in range(12)]


def test_records_are_stored_in_the_file_of_the_partition_they_were_read_from(tmp_path):
    Record = namedtuple("Record", "topic partition offset key value headers")
    records = [
        Record(
            "sluice.audit.eu", 4, i, b"acme", _audit(i).SerializeToString(), kafka_headers("audit")
        )
        for i in range(3)
    ]
    good, dead = classify("eu", records, with_partition=True)
    assert not dead and [(kind, partition) for kind, _, partition in good] == [("audit", 4)] * 3
    assert [kind for kind, _ in classify("eu", records)[0]] == ["audit"] * 3  # pairs, as before
    store = RegionalStore(tmp_path, "eu")
    assert store.write(good) == (3, 0)
    assert [p.name for *_, p in store.files("audit")] == [f"{DAY}.p4.jsonl"]
