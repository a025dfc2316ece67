"""Billing and audit events: what emitting costs a request, and what one
producer and one sink sustain against a real Kafka broker.

  emit on the request path  EventRecorder.finish for a typical finished request
                            (both events built and queued), p50/p99; the
                            spool writer runs in its thread meanwhile.
  producer -> Kafka         events/s from emit() until Kafka acknowledged all
                            (spool fsync per batch, acks=all, idempotent).
  Kafka -> sink             events/s from a cold consumer group until all are
                            stored (fsync'd) and their offsets committed.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sluice.auth.v1 import principal_pb2
from sluice.config.sinks import SinksSettings
from sluice.events.emitter import EventEmitter
from sluice.events.kafka_forwarder import KafkaForwarder
from sluice.events.records import region_topics
from sluice.events.spool import Spool
from sluice.events.v1 import events_pb2 as ev
from sluice.gateway.accounting import EventRecorder, RequestRecord
from sluice.routing.v1 import candidate_pb2
from sluice.sinks.consumer import RegionalSink
from sluice.sinks.storage import RegionalStore
from sluice.wire.events import Event, text_delta
from sluice.wire.request import MessagesRequest
from tests.infra.kafka_broker import create_topics

TARGET_EMIT_P50_MS = 0.2
REGION = "bench"


@dataclass
class EventsResult:
    emit_p50_ms: float
    emit_p99_ms: float
    produce_per_s: float
    sink_per_s: float
    events: int


class _Null:
    region = REGION

    def send(self, records):  # type: ignore[no-untyped-def]
        return len(records)

    def close(self) -> None:
        pass


def _finished_record(i: int) -> RequestRecord:
    principal = principal_pb2.Principal(tenant_id=f"t{i % 20}", key_id="k1", tier="standard", region=REGION,
                                        audit_content="hash")
    request = MessagesRequest(json.dumps({"model": "claude-haiku-4-5", "max_tokens": 256, "messages": [
        {"role": "user", "content": "Summarise this paragraph " * 20}]}).encode(), "2023-06-01")
    record = RequestRecord(principal, request)
    record.candidates = [candidate_pb2.Candidate(model_id="claude-haiku-4-5", prices=candidate_pb2.Prices(
        input=1, output=5, cache_write_5m=1.25, cache_read=0.1))]
    record.observe(Event.of({"type": "message_start", "message": {
        "model": "claude-haiku-4-5", "usage": {"input_tokens": 120, "output_tokens": 1}}}))
    for word in range(40):
        record.observe(text_delta(0, f"word{word} "))
    record.observe(Event.of({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                             "usage": {"input_tokens": 120, "output_tokens": 40}}))
    return record


def _emit_cost(workdir: Path, n: int) -> tuple[float, float]:
    emitter = EventEmitter(REGION, Spool(workdir / "emit", 1 << 30, 16 << 20), _Null(), queue_max=10_000,
                           batch_max=500, retry_s=1, alarm_ratio=0.8)
    emitter.start()
    recorder = EventRecorder(emitter)
    records = [_finished_record(i) for i in range(n)]
    samples = []
    for record in records:
        t0 = time.perf_counter()
        recorder.finish(record, ev.OUTCOME_OK)
        samples.append((time.perf_counter() - t0) * 1000)
    emitter.stop(10)
    q = statistics.quantiles(samples, n=100)
    return q[49], q[98]


def _produce(workdir: Path, bootstrap: str, n: int) -> float:
    spool = Spool(workdir / "produce", 1 << 30, 16 << 20)
    emitter = EventEmitter(REGION, spool, KafkaForwarder(REGION, bootstrap, 30), queue_max=n + 1, batch_max=1000,
                           retry_s=0.5, alarm_ratio=0.8)
    recorder = EventRecorder(emitter)
    records = [_finished_record(i) for i in range(n // 2)]
    sent = threading.Event()
    emitter.start()
    t0 = time.perf_counter()
    for record in records:
        recorder.finish(record, ev.OUTCOME_OK)  # two events each
    while not emitter.idle:
        sent.wait(0.005)
    elapsed = time.perf_counter() - t0
    emitter.stop(10)
    return n / elapsed


def _sink(workdir: Path, bootstrap: str, n: int) -> float:
    settings = SinksSettings(data_dir=str(workdir / "sink"), group_id=f"bench-{uuid.uuid4().hex[:6]}",
                             batch_max_records=1000, poll_timeout_ms=100)
    done = threading.Event()
    stored = [0]

    def on_batch(count: int, _dups: int, _dead: int) -> None:
        stored[0] += count
        if stored[0] >= n:
            done.set()

    sink = RegionalSink(REGION, bootstrap, settings, RegionalStore(settings.data_dir, REGION), on_batch=on_batch)
    t0 = time.perf_counter()
    sink.start()
    done.wait(300)
    elapsed = time.perf_counter() - t0
    sink.stop(10)
    return stored[0] / elapsed


def run(bootstrap: str, n: int = 20_000) -> EventsResult:
    create_topics(bootstrap, region_topics(REGION))
    workdir = Path(tempfile.mkdtemp(prefix="sluice-bench-events-"))
    p50, p99 = _emit_cost(workdir, 5000)
    produced = _produce(workdir, bootstrap, n)
    sunk = _sink(workdir, bootstrap, n)
    return EventsResult(p50, p99, produced, sunk, n)


def table(r: EventsResult) -> str:
    return "\n".join([
        f"{'events':<26} {'p50 ms':>8} {'p99 ms':>8} {'events/s':>9}",
        f"{'emit on the request path':<26} {r.emit_p50_ms:>8.3f} {r.emit_p99_ms:>8.3f} {'':>9}",
        f"{'producer -> Kafka':<26} {'':>8} {'':>8} {r.produce_per_s:>9.0f}",
        f"{'Kafka -> sink (stored)':<26} {'':>8} {'':>8} {r.sink_per_s:>9.0f}",
    ])


def verdict(r: EventsResult) -> str:
    return (f"Target: emitting adds < {TARGET_EMIT_P50_MS} ms at p50 on the request path: {r.emit_p50_ms:.3f} ms -> "
            + ("met" if r.emit_p50_ms < TARGET_EMIT_P50_MS else "NOT met"))
