"""Consumes a region's billing, audit and review records into its storage.

Where the records come from is a port, `RecordSource`, with two adapters:
the region's Kafka topics (`kafka_source.KafkaSource`, production) and, when
the region has no Kafka (`make run`), the gateway's local event spool
(`spool_source.SpoolSource`). The sink below cannot tell them apart.

Per batch: decode every record (what cannot be read, or belongs to another
region, is dead-lettered with the reason), store the rest durably, then
acknowledge the batch to its source (Kafka: commit the offsets; spool: move
its cursor). A crash anywhere before the acknowledgement means the batch is
delivered again, and the store skips what it already holds (by event id).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from sluice.config.sinks import SinksSettings
from sluice.events.records import MalformedEvent, decode, topic
from sluice.sinks.storage import RegionalStore
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


class Record(Protocol):
    """One record as a source delivers it: the shape of a Kafka record."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None


class RecordSource(Protocol):
    """Where a sink's records come from. Delivery is at least once: whatever
    was polled and not acknowledged is delivered again after a failure or a
    restart. Called from the sink's one thread only."""

    # For logs and the start-up banner, e.g. "Kafka host:9092".
    description: str

    def connect(self, stopping: threading.Event) -> None:
        """Ready to poll: blocks until then, or until `stopping` is set; raises
        if it cannot (the sink retries). Called again after any failure, and
        polling then resumes after the last acknowledged record."""

    def poll(self, max_records: int, timeout_s: float) -> Sequence[Record]:
        """Up to `max_records` after those already polled; [] if none came
        within `timeout_s`."""

    def dead_letter(self, rejected: Sequence[tuple[Record, str]]) -> None:
        """Keeps records the sink cannot store, each with why, durably before
        returning; raises if it could not (then nothing is acknowledged)."""

    def ack(self) -> None:
        """Everything polled is stored or dead-lettered: never deliver it again."""

    def close(self) -> None:
        """Releases the source (the sink stopped, or before reconnecting)."""


def classify(region: str, records, with_partition: bool = False) -> tuple[list, list]:
    """(kind, event) pairs to store, and (record, reason) pairs to dead-letter.
    With `with_partition`, (kind, event, partition) triples to store instead
    (partition: the record's Kafka partition, None for a record without one:
    the local spool), as RegionalStore.write takes them."""
    good, dead = [], []
    for record in records:
        try:
            kind, event = decode(record.headers, record.value)
            if record.topic != topic(kind, region):
                raise MalformedEvent(f"{kind} event on topic {record.topic}")
            if event.request.region != region:
                raise MalformedEvent(f"event of region {event.request.region!r} "
                                     f"on region {region!r}'s topic; not stored here")
        except MalformedEvent as exc:
            dead.append((record, str(exc)))
            continue
        partition = getattr(record, "partition", None)
        good.append((kind, event, partition) if with_partition else (kind, event))
    return good, dead


class RegionalSink:
    """One region's sink consumer: a thread that polls its source, stores, and
    acknowledges. A sink process may run several (sinks.consumers), each with
    its own source (a member of the region's consumer group) and its own
    store object; their stores fence each other (see storage.py)."""

    def __init__(self, region: str, source: RecordSource | str, settings: SinksSettings, store: RegionalStore,
                 on_batch: Callable[[int, int, int], None] | None = None, name: str | None = None) -> None:
        """`source` is a RecordSource, or (as before the port existed) the
        region's Kafka bootstrap servers; `name` names the thread
        (default sluice-sink-<region>)."""
        if isinstance(source, str):
            from sluice.sinks.kafka_source import KafkaSource

            source = KafkaSource(region, source, settings)
        self.region = region
        self.source = source
        self._settings = settings
        self._store = store
        self._stopping = threading.Event()
        self._on_batch = on_batch
        self._thread = threading.Thread(target=self._run, name=name or f"sluice-sink-{region}", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Asks the thread to stop after its current batch; `stop` waits for it."""
        self._stopping.set()

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self.source.connect(self._stopping)
                    self.ready.set()
                    while not self._stopping.is_set():
                        self.step()
                except Exception:  # source or disk trouble: start over from the last ack
                    log.exception("sink for region %s failed (%s); resuming after the last acknowledged record",
                                  self.region, self.source.description)
                    self.source.close()
                    self._stopping.wait(1.0)
        finally:
            self.source.close()

    def step(self) -> int:
        """One batch: poll, store, dead-letter, acknowledge. Returns how many
        records it polled (0: none came within sinks.poll_timeout_ms)."""
        records = self.source.poll(self._settings.batch_max_records, self._settings.poll_timeout_ms / 1000)
        if not records:
            return 0
        started = time.monotonic()
        good, dead = classify(self.region, records, with_partition=True)
        stored, duplicates = self._store.write(good)
        if dead:
            self.source.dead_letter(dead)
        self.source.ack()
        metrics.SINK_BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.SINK_RECORDS.labels("stored").inc(stored)
        metrics.SINK_RECORDS.labels("duplicate").inc(duplicates)
        metrics.SINK_RECORDS.labels("dead_letter").inc(len(dead))
        if self._on_batch:
            self._on_batch(stored, duplicates, len(dead))
        return len(records)
