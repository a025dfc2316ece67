"""The spool and the emitter: durable, ordered, bounded, never lossy."""

from __future__ import annotations

import threading

import pytest

from sluice.events.emitter import CrossRegionEvent, EventEmitter
from sluice.events.records import SpoolRecord
from sluice.events.spool import Spool
from sluice.events.v1 import events_pb2


def _rec(i: int) -> SpoolRecord:
    return SpoolRecord("billing" if i % 2 else "audit", f"t{i % 3}".encode(), f"value-{i}".encode())


def test_records_come_back_in_order_across_segments_and_reopen(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    records = [_rec(i) for i in range(40)]
    for i in range(0, 40, 4):
        spool.append(records[i:i + 4])
    assert len(list(tmp_path.glob("*.seg"))) > 3
    first = spool.read(15)
    assert [r for r, _ in first] == records[:15]
    spool.commit(first[-1][1])
    spool.close()

    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    rest = reopened.read(100)
    assert [r for r, _ in rest] == records[15:]
    reopened.commit(rest[-1][1])
    assert reopened.empty and reopened.pending_bytes == 0
    assert len(list(tmp_path.glob("*.seg"))) == 1  # acknowledged segments are removed


def test_a_torn_tail_from_a_crash_is_cut_and_the_rest_kept(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    spool.append([_rec(1), _rec(2)])
    spool.close()
    segment = next(tmp_path.glob("*.seg"))
    with open(segment, "ab") as f:
        f.write(b"\x00\x00\x01\x00garbage")  # a frame header promising more than was written
    reopened = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    assert [r for r, _ in reopened.read(10)] == [_rec(1), _rec(2)]
    reopened.append([_rec(3)])
    assert [r for r, _ in reopened.read(10)] == [_rec(1), _rec(2), _rec(3)]


def test_a_damaged_record_mid_spool_is_moved_aside_not_dropped_silently(tmp_path):
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=1 << 20)
    spool.append([_rec(1), _rec(2), _rec(3)])
    segment = next(tmp_path.glob("*.seg"))
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    got = [r for r, _ in spool.read(10)]
    assert got == [_rec(1)]
    assert list(tmp_path.glob("*.corrupt-at-*"))


def test_full_spool_stops_accepting(tmp_path):
    spool = Spool(tmp_path, max_bytes=64 * 1024, segment_bytes=16 * 1024)
    emitter = EventEmitter("eu", spool, None, queue_max=10, batch_max=10, retry_s=0.1, alarm_ratio=0.5)
    assert emitter.accepting
    big = SpoolRecord("billing", b"t", b"x" * 1000)
    spool.append([big] * 70)
    assert spool.full and not emitter.accepting


class FakeKafka:
    """Stands in for the region's Kafka in unit tests: can be down, records what it took."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.up = False
        self.taken: list[SpoolRecord] = []
        self.sent = threading.Condition()

    def send(self, records):  # type: ignore[no-untyped-def]
        if not self.up:
            return 0
        with self.sent:
            self.taken.extend(records)
            self.sent.notify_all()
        return len(records)

    def close(self) -> None:
        pass

    def wait_for(self, n: int, timeout: float = 10) -> bool:
        with self.sent:
            return self.sent.wait_for(lambda: len(self.taken) >= n, timeout)


def _event(i: int) -> events_pb2.BillingEvent:
    return events_pb2.BillingEvent(event_id=f"e{i}", request=events_pb2.RequestSummary(tenant_id="acme", region="eu"))


def test_events_wait_in_the_spool_while_kafka_is_down_and_arrive_in_order(tmp_path):
    kafka = FakeKafka("eu")
    spool = Spool(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    emitter = EventEmitter("eu", spool, kafka, queue_max=1000, batch_max=7, retry_s=0.05, alarm_ratio=0.8)
    emitter.start()
    for i in range(50):
        emitter.emit("billing", "eu", "acme", _event(i))
    kafka.up = True
    assert kafka.wait_for(50)
    emitter.stop(5)
    assert [events_pb2.BillingEvent.FromString(r.value).event_id for r in kafka.taken] == [f"e{i}" for i in range(50)]
    assert Spool(tmp_path, 1 << 20, 4096).empty


def test_a_restart_replays_what_the_spool_holds(tmp_path):
    down = FakeKafka("eu")
    emitter = EventEmitter("eu", Spool(tmp_path, 1 << 20, 4096), down, queue_max=1000, batch_max=50,
                           retry_s=0.05, alarm_ratio=0.8)
    emitter.start()
    for i in range(20):
        emitter.emit("billing", "eu", "acme", _event(i))
    emitter.stop(0.2)  # Kafka never came back: everything stays spooled

    kafka = FakeKafka("eu")
    kafka.up = True
    again = EventEmitter("eu", Spool(tmp_path, 1 << 20, 4096), kafka, queue_max=1000, batch_max=50,
                         retry_s=0.05, alarm_ratio=0.8)
    again.start()
    assert kafka.wait_for(20)
    again.stop(5)
    assert [events_pb2.BillingEvent.FromString(r.value).event_id for r in kafka.taken] == [f"e{i}" for i in range(20)]


def test_queue_overflow_writes_through_instead_of_dropping(tmp_path):
    spool = Spool(tmp_path, 1 << 20, 1 << 20)
    emitter = EventEmitter("eu", spool, None, queue_max=2, batch_max=10, retry_s=0.1, alarm_ratio=0.8)
    for i in range(5):  # writer not started: the queue fills after two
        emitter.emit("billing", "eu", "acme", _event(i))
    assert [events_pb2.BillingEvent.FromString(r.value).event_id for r, _ in spool.read(10)] == ["e2", "e3", "e4"]
    emitter.start()
    emitter.stop(1)
    assert len(Spool(tmp_path, 1 << 20, 1 << 20).read(10)) == 5


def test_another_regions_event_cannot_be_emitted(tmp_path):
    emitter = EventEmitter("eu", Spool(tmp_path, 1 << 20, 1 << 20), FakeKafka("eu"), queue_max=10, batch_max=10,
                           retry_s=0.1, alarm_ratio=0.8)
    with pytest.raises(CrossRegionEvent):
        emitter.emit("billing", "us", "acme", _event(1))
    with pytest.raises(CrossRegionEvent):
        EventEmitter("eu", Spool(tmp_path / "x", 1 << 20, 1 << 20), FakeKafka("us"), queue_max=10, batch_max=10,
                     retry_s=0.1, alarm_ratio=0.8)


def test_a_second_process_cannot_open_the_same_spool(tmp_path):
    import subprocess
    import sys

    spool = Spool(tmp_path, 1 << 20, 1 << 20)
    other = subprocess.run([sys.executable, "-c", "import sys; from sluice.events.spool import Spool\n"
                            f"Spool({str(tmp_path)!r}, 1 << 20, 1 << 20)"], capture_output=True, text=True, check=False)
    assert other.returncode != 0 and "in use by another process" in other.stderr
    spool.close()


def test_pending_records_can_be_read_while_a_gateway_holds_the_spool(tmp_path):
    from sluice.events.spool import pending_records

    spool = Spool(tmp_path, 1 << 20, 64)
    spool.append([_rec(i) for i in range(6)])
    spool.commit(spool.read(2)[-1][1])
    assert pending_records(tmp_path) == [_rec(i) for i in range(2, 6)]
    spool.close()
