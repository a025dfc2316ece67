"""The sink on the local event spool (no Kafka, `make run`): the spool-source
adapter hands records to the same storing core as Kafka does, and
acknowledges them in the spool as a Kafka commit would: nothing re-read after
a restart, nothing stored twice after a crash between store and ack, nothing
lost, and the spool emptied."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import namedtuple
from collections.abc import Callable

import pytest

from sluice.config import Settings
from sluice.config.events import EventsSettings
from sluice.config.sinks import SinksSettings
from sluice.events.emitter import open_emitter
from sluice.events.records import SpoolRecord, kafka_headers
from sluice.events.spool import open_shared
from sluice.events.v1 import events_pb2 as ev
from sluice.sinks import storage
from sluice.sinks.consumer import RegionalSink
from sluice.sinks.module import open_source
from sluice.sinks.spool_source import SpoolSource
from sluice.sinks.storage import RegionalStore

REGION = "local"
DAY_S = 1_795_000_000  # 2026-11-18 UTC


def _summary(i: int, region: str = REGION) -> ev.RequestSummary:
    s = ev.RequestSummary(request_id=f"req_{i}", tenant_id="demo", region=region, model_served="claude-haiku-4-5",
                          input_tokens=10, output_tokens=20, cost_usd=0.001, outcome=ev.OUTCOME_OK)
    s.occurred_at.seconds = DAY_S + i
    return s


def _records(start: int, n: int, region: str = REGION) -> list[SpoolRecord]:
    """n requests' billing and audit events, as the gateway's emitter spools them."""
    out = []
    for i in range(start, start + n):
        out.append(SpoolRecord("billing", b"demo", ev.BillingEvent(event_id=f"b{i}", request=_summary(i, region))
                               .SerializeToString()))
        out.append(SpoolRecord("audit", b"demo", ev.AuditEvent(event_id=f"a{i}", request=_summary(i, region))
                               .SerializeToString()))
    return out


def _settings(tmp_path) -> tuple[EventsSettings, SinksSettings]:
    events = EventsSettings(spool_dir=str(tmp_path / "spool"), spool_segment_bytes=4096)
    return events, SinksSettings(data_dir=str(tmp_path / "sinks"), batch_max_records=50, poll_timeout_ms=10)


class Sink:
    """A sink on the spool, stepped by hand (no thread), counting what each batch did."""

    def __init__(self, tmp_path) -> None:
        events, sinks = _settings(tmp_path)
        self.store = RegionalStore(sinks.data_dir, REGION)
        self.source = SpoolSource(REGION, events, self.store)
        self.batches: list[tuple[int, int, int]] = []
        self.sink = RegionalSink(REGION, self.source, sinks, self.store, on_batch=lambda *b: self.batches.append(b))
        self.source.connect(threading.Event())

    def drain(self) -> tuple[int, int, int]:
        """Steps until a poll finds nothing; (stored, duplicates, dead letters) in all."""
        while self.sink.step():
            pass
        return tuple(sum(b[i] for b in self.batches) for i in range(3))  # type: ignore[return-value]

    def billing_ids(self) -> list[str]:
        return [e["event_id"] for e in self.store.events("billing")]


def _poll(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.01)


def _append(tmp_path, records: list[SpoolRecord]) -> None:
    """Appends as the gateway would, then lets go of the spool."""
    events, _ = _settings(tmp_path)
    spool = open_shared(f"{events.spool_dir}/{REGION}", events.spool_max_bytes, events.spool_segment_bytes)
    spool.append(records)
    spool.close()


def test_stored_records_are_acknowledged_and_not_read_again_after_a_restart(tmp_path):
    for i in range(0, 200, 10):
        _append(tmp_path, _records(i, 10))

    def segments() -> int:
        return len(list((tmp_path / "spool" / REGION).glob("*.seg")))

    assert segments() > 3
    first = Sink(tmp_path)
    assert first.drain() == (400, 0, 0)
    # Acknowledged: the spool is empty and keeps at most the segment its cursor is in, and the next.
    assert first.source._spool.empty and segments() <= 2
    first.source.close()

    restarted = Sink(tmp_path)
    assert restarted.source.poll(100, 0.01) == []  # nothing acknowledged comes again
    restarted.source._spool.append(_records(200, 5))
    assert restarted.drain() == (10, 0, 0)
    assert sorted(restarted.billing_ids()) == sorted(f"b{i}" for i in range(205))
    assert restarted.store.verify_audit() == []
    restarted.source.close()


def test_a_crash_between_store_and_ack_does_not_store_a_billing_record_twice(tmp_path):
    _append(tmp_path, _records(0, 10))
    # A sink process that stores a batch and dies (SIGKILL-like) before acknowledging it.
    crash = textwrap.dedent(f"""
        import os, threading
        from sluice.config.events import EventsSettings
        from sluice.config.sinks import SinksSettings
        from sluice.sinks.consumer import RegionalSink
        from sluice.sinks.spool_source import SpoolSource
        from sluice.sinks.storage import RegionalStore
        events = EventsSettings(spool_dir={str(tmp_path / 'spool')!r}, spool_segment_bytes=4096)
        sinks = SinksSettings(data_dir={str(tmp_path / 'sinks')!r}, batch_max_records=50, poll_timeout_ms=10)
        store = RegionalStore(sinks.data_dir, "local")
        source = SpoolSource("local", events, store)
        source.ack = lambda: os._exit(9)
        source.connect(threading.Event())
        RegionalSink("local", source, sinks, store).step()
    """)
    died = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=60, check=False)
    assert died.returncode == 9, died.stderr
    stored_before = [e["event_id"] for e in RegionalStore(tmp_path / "sinks", REGION).events("billing")]
    assert stored_before == [f"b{i}" for i in range(10)]  # stored, not acknowledged

    restarted = Sink(tmp_path)
    assert restarted.drain() == (0, 20, 0)  # all delivered again, all known by event id
    assert restarted.billing_ids() == [f"b{i}" for i in range(10)]
    assert restarted.store.verify_audit() == []
    assert restarted.source._spool.empty
    restarted.source.close()


def test_records_it_cannot_store_are_dead_lettered_to_a_file_and_the_rest_stored(tmp_path):
    bad = [SpoolRecord("billing", b"demo", b"\xff\xfe not protobuf"), *_records(7, 1, region="eu")]
    _append(tmp_path, [*_records(0, 2), *bad, *_records(2, 1)])
    sink = Sink(tmp_path)
    assert sink.drain() == (6, 0, 3)
    assert sink.source._spool.empty
    letters = [json.loads(line) for path in (tmp_path / "sinks" / REGION / "deadletter").glob("*.jsonl")
               for line in path.read_text().splitlines()]
    assert len(letters) == 3
    assert "does not decode" in letters[0]["reason"]
    assert all("region 'eu'" in letter["reason"] for letter in letters[1:])
    assert all(letter["source"].startswith(f"{tmp_path / 'spool' / REGION}@") for letter in letters)
    sink.source.close()


def test_the_sink_shares_the_gateways_spool_in_one_process_and_empties_it(tmp_path):
    events, sinks = _settings(tmp_path)
    emitter = open_emitter(REGION, events)  # no Kafka: the spool is where events go
    emitter.start()
    store = RegionalStore(sinks.data_dir, REGION)
    sink = RegionalSink(REGION, SpoolSource(REGION, events, store), sinks, store)
    sink.start()
    try:
        for i in range(30):
            emitter.emit("billing", REGION, "demo", ev.BillingEvent(event_id=f"b{i}", request=_summary(i)))
            emitter.emit("audit", REGION, "demo", ev.AuditEvent(event_id=f"a{i}", request=_summary(i)))
        _poll(lambda: len(list(store.events("billing"))) == 30 and len(list(store.events("audit"))) == 30, 10,
              "the sink to store every event")
        _poll(lambda: emitter.idle, 10, "the spool to be acknowledged")
    finally:
        sink.stop(5)
        emitter.stop(5)
    assert store.verify_audit() == []
    # Both let go: the spool is free again.
    again = open_shared(f"{events.spool_dir}/{REGION}", events.spool_max_bytes, events.spool_segment_bytes)
    assert again.empty
    again.close()


def test_a_sink_in_another_process_than_the_gateway_is_refused_at_start(tmp_path):
    events, sinks = _settings(tmp_path)
    emitter = open_emitter(REGION, events)
    try:
        other = textwrap.dedent(f"""
            from sluice.config import ConfigError, Settings
            from sluice.sinks.module import open_source
            from sluice.sinks.storage import RegionalStore
            settings = Settings(region="local", events={{"spool_dir": {events.spool_dir!r}}},
                                sinks={{"data_dir": {sinks.data_dir!r}}})
            try:
                open_source(settings, RegionalStore(settings.sinks.data_dir, "local"))
            except ConfigError as exc:
                print(exc)
                raise SystemExit(3)
        """)
        result = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 3, result.stderr
        assert "another process holds it" in result.stdout and "serve all,sinks" in result.stdout
    finally:
        emitter.stop(1)


def test_with_kafka_configured_the_sink_reads_kafka_not_the_spool(tmp_path):
    settings = Settings(region=REGION, events={"kafka_bootstrap": "127.0.0.1:9", "spool_dir": str(tmp_path)})
    source = open_source(settings, RegionalStore(tmp_path / "sinks", REGION))
    assert source.description == "Kafka 127.0.0.1:9"
    assert not (tmp_path / REGION).exists()  # the spool was not touched


KafkaRecord = namedtuple("KafkaRecord", "topic partition offset key value headers")


class FakeSource:
    """Any source: the sink stores before it acknowledges, and a failed store is not acknowledged."""

    description = "fake"

    def __init__(self, batches) -> None:  # type: ignore[no-untyped-def]
        self.batches, self.log = list(batches), []

    def connect(self, stopping) -> None:  # type: ignore[no-untyped-def]
        self.log.append("connect")

    def poll(self, max_records, timeout_s):  # type: ignore[no-untyped-def]
        return self.batches[0] if self.batches else []

    def dead_letter(self, rejected) -> None:  # type: ignore[no-untyped-def]
        self.log.append(("dead", len(rejected)))

    def ack(self) -> None:
        self.batches.pop(0)
        self.log.append("ack")

    def close(self) -> None:
        self.log.append("close")


def test_the_storing_core_is_the_same_whatever_the_source(tmp_path):
    record = _records(0, 1)[0]
    batch = [KafkaRecord(f"sluice.billing.{REGION}", 0, 0, b"demo", record.value, kafka_headers("billing"))]
    source = FakeSource([batch])
    store = RegionalStore(tmp_path, REGION)
    writes = []
    real_write = store.write

    def failing_once(events):  # type: ignore[no-untyped-def]
        writes.append(1)
        if len(writes) == 1:
            raise OSError("disk full")
        return real_write(events)

    store.write = failing_once  # type: ignore[method-assign]
    sink = RegionalSink(REGION, source, SinksSettings(poll_timeout_ms=10), store)
    with pytest.raises(OSError):
        sink.step()
    assert "ack" not in source.log  # not stored: not acknowledged, so delivered again
    assert sink.step() == 1 and source.log == ["ack"]
    assert [e["event_id"] for e in store.events("billing")] == ["b0"]


def test_the_commands_read_a_store_the_running_sink_is_writing(tmp_path, monkeypatch):
    """`sluice billing report` / `audit verify` under `make run` read files the
    sink may be appending to: a line not yet whole is not read, and a chain
    whose head has not caught up yet is read again, not reported."""
    store = RegionalStore(tmp_path, REGION)
    store.write([("billing", ev.BillingEvent(event_id="b0", request=_summary(0))),
                 ("audit", ev.AuditEvent(event_id="a0", request=_summary(0)))])
    billing, audit = store.path("billing", "demo", "2026-11-18"), store.path("audit", "demo", "2026-11-18")
    whole = audit.read_text()
    with billing.open("a") as f:
        f.write('{"event_id": "b1", "requ')  # the sink is mid-write
    assert [e["event_id"] for e in store.events("billing")] == ["b0"]
    # Lines ahead of the head (written, head not yet replaced), then the head catches up.
    writer = RegionalStore(tmp_path, REGION)
    writer.write([("audit", ev.AuditEvent(event_id="a1", request=_summary(1)))])
    head = audit.with_suffix(".head").read_text()
    audit.with_suffix(".head").write_text(json.dumps({"records": 1, "hash": json.loads(whole)["hash"]}) + "\n")
    reads = []

    def read_head(path):  # type: ignore[no-untyped-def]
        reads.append(path)
        found = real_read_head(path)
        if len(reads) == 2:  # the sink replaces the head just after the reader's first look
            audit.with_suffix(".head").write_text(head)
        return found

    real_read_head = storage._read_head
    monkeypatch.setattr(storage, "_read_head", read_head)
    assert store.verify_audit() == []
    assert len(reads) > 2  # it did read again
