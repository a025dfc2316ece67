"""Consumes a region's billing and audit topics into its storage.

Per batch: decode every record (what cannot be read, or belongs to another
region, goes to the dead-letter topic with the reason), store the rest
durably, then commit the offsets. A crash anywhere before the commit means
the batch is delivered again, and the store skips what it already holds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from sluice.config.settings import SinksSettings
from sluice.events.records import (
    EVENT_TYPES,
    REASON_HEADER,
    SOURCE_HEADER,
    MalformedEvent,
    dead_letter_topic,
    decode,
    topic,
)
from sluice.sinks.storage import RegionalStore
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


def classify(region: str, records) -> tuple[list, list]:  # type: ignore[no-untyped-def]
    """(kind, event) pairs to store, and (record, reason) pairs to dead-letter."""
    good, dead = [], []
    for record in records:
        try:
            kind, event = decode(record.headers, record.value)
            if record.topic != topic(kind, region):
                raise MalformedEvent(f"{kind} event on topic {record.topic}")
            if event.request.region != region:  # type: ignore[attr-defined]
                raise MalformedEvent(f"event of region {event.request.region!r} "  # type: ignore[attr-defined]
                                     f"on region {region!r}'s topic; not stored here")
        except MalformedEvent as exc:
            dead.append((record, str(exc)))
            continue
        good.append((kind, event))
    return good, dead


class RegionalSink:
    def __init__(self, region: str, bootstrap: str, settings: SinksSettings, store: RegionalStore,
                 on_batch: Callable[[int, int, int], None] | None = None) -> None:
        self.region = region
        self._bootstrap = [b.strip() for b in bootstrap.split(",") if b.strip()]
        self._settings = settings
        self._store = store
        self._topics = [topic(kind, region) for kind in EVENT_TYPES]
        self._stopping = threading.Event()
        self._on_batch = on_batch
        self._thread = threading.Thread(target=self._run, name=f"sluice-sink-{region}", daemon=True)
        self.ready = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        self._stopping.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stopping.is_set():
            consumer = producer = None
            try:
                consumer = KafkaConsumer(
                    bootstrap_servers=self._bootstrap, group_id=f"{self._settings.group_id}-{self.region}",
                    client_id=f"sluice-sink-{self.region}", enable_auto_commit=False, auto_offset_reset="earliest",
                    max_poll_records=self._settings.batch_max_records,
                    # Back within a second of the broker's return, not kafka-python's 30 s backoff.
                    reconnect_backoff_max_ms=1000,
                )
                self._wait_for_topics(consumer)
                consumer.subscribe(self._topics)
                producer = KafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
                                         client_id=f"sluice-sink-dlq-{self.region}", reconnect_backoff_max_ms=1000)
                self.ready.set()
                while not self._stopping.is_set():
                    self._batch(consumer, producer)
            except Exception:  # noqa: BLE001 - Kafka or disk trouble: start over from the committed offsets
                log.exception("sink for region %s failed; reconnecting from the last committed offsets", self.region)
                self._stopping.wait(1.0)
            finally:
                for client in (consumer, producer):
                    if client is not None:
                        try:
                            client.close()
                        except Exception:  # noqa: BLE001
                            log.debug("closing a kafka client failed", exc_info=True)

    def _wait_for_topics(self, consumer: KafkaConsumer) -> None:
        """Joins the group only once the topics' partitions are known: joining
        earlier (a broker just restarted) can leave the sink assigned nothing."""
        logged = False
        while not self._stopping.is_set():
            missing = [t for t in self._topics if not consumer.partitions_for_topic(t)]
            if not missing:
                return
            if not logged:
                log.warning("waiting for topics %s on %s", missing, ",".join(self._bootstrap))
                logged = True
            self._stopping.wait(0.5)

    def _batch(self, consumer: KafkaConsumer, producer: KafkaProducer) -> None:
        polled = consumer.poll(timeout_ms=self._settings.poll_timeout_ms,
                               max_records=self._settings.batch_max_records)
        records = [r for batch in polled.values() for r in batch]
        if not records:
            return
        started = time.monotonic()
        good, dead = classify(self.region, records)
        stored, duplicates = self._store.write(good)
        sent = []
        for record, reason in dead:
            log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
            sent.append(producer.send(dead_letter_topic(self.region), key=record.key, value=record.value or b"",
                                      headers=[*(record.headers or []), (REASON_HEADER, reason.encode()),
                                               (SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}"
                                                .encode())]))
        for future in sent:
            future.get(timeout=30)  # raises unless acknowledged: then nothing is committed
        try:
            consumer.commit()
        except KafkaError as exc:
            # Rebalanced away mid-batch: the next owner gets these again and skips what is stored.
            log.warning("offset commit failed (%s); the batch will be delivered again", exc)
        metrics.SINK_BATCH_SECONDS.observe(time.monotonic() - started)
        metrics.SINK_RECORDS.labels("stored").inc(stored)
        metrics.SINK_RECORDS.labels("duplicate").inc(duplicates)
        metrics.SINK_RECORDS.labels("dead_letter").inc(len(dead))
        if self._on_batch:
            self._on_batch(stored, duplicates, len(dead))
