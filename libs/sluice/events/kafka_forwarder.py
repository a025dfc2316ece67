"""Sends spooled events to one region's Kafka cluster (kafka-python).

A forwarder is built for one region and derives its topics from that region
alone: there is no argument through which an event could reach another
region's topic or cluster.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError

from sluice.events.partitions import SkewMeter, ensure_topics
from sluice.events.records import EVENT_TYPES, SpoolRecord, bootstrap_servers, kafka_headers, topic
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


class KafkaForwarder:
    def __init__(self, region: str, bootstrap: str, send_timeout_s: float, *,
                 partitions: int | None = None, replication_factor: int = -1,
                 skew_window_s: float = 60.0) -> None:
        """A forwarder for `region`'s topics on the cluster `bootstrap`
        ("host:port[,host:port]"). With `partitions`, the region's topics
        that do not exist are created with that many partitions before the
        first send (see partitions.ensure_topics); None leaves topics to the
        cluster (tests, or topics managed elsewhere)."""
        self.region = region
        self._bootstrap_setting = bootstrap
        self._bootstrap = bootstrap_servers(bootstrap)
        self._timeout_s = send_timeout_s
        self._topics = {kind: topic(kind, region) for kind in EVENT_TYPES}
        self._headers = {kind: kafka_headers(kind) for kind in EVENT_TYPES}
        self._producer: KafkaProducer | None = None
        self._partitions = partitions
        self._replication_factor = replication_factor
        self._topics_ensured = partitions is None
        self.skew = SkewMeter(skew_window_s)

    def prepare(self) -> None:
        """At start (the emitter's thread): creates the region's missing topics
        so sinks can join before the first event; on failure it is tried
        again before the first send."""
        self._ensure_topics()

    def _ensure_topics(self) -> None:
        """Once per forwarder: creates missing topics before a send could
        auto-create them with the broker's default count."""
        if self._topics_ensured:
            return
        assert self._partitions is not None
        try:
            ensure_topics(self._bootstrap_setting, self.region, self._partitions,
                          self._replication_factor, timeout_s=self._timeout_s)
            self._topics_ensured = True
        except Exception as exc:  # noqa: BLE001 - Kafka down: the send below fails too, and retries
            log.debug("events: could not check or create topics: %r", exc)

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
            self._ensure_topics()
            timeout_ms = int(self._timeout_s * 1000)
            self._producer = KafkaProducer(
                bootstrap_servers=self._bootstrap,
                acks="all",
                enable_idempotence=True,
                # Batches form while a round trip is in flight; no added wait.
                linger_ms=0,
                # A send that cannot get metadata or an ack in time fails, so
                # the spool keeps the event instead of a buffer in memory.
                max_block_ms=timeout_ms,
                request_timeout_ms=max(timeout_ms - 500, 1000),
                delivery_timeout_ms=max(timeout_ms, 1500),
                reconnect_backoff_max_ms=1000,
                client_id=f"sluice-events-{self.region}",
            )
        return self._producer

    def send(self, records: Sequence[SpoolRecord]) -> int:
        """Sends records in order; returns how many from the start were
        acknowledged by all in-sync replicas. Fewer than all means Kafka is
        down or slow: the producer is dropped so nothing it still buffers is
        sent behind the spool's back, and the caller retries from the spool."""
        futures = []
        try:
            producer = self._connect()
            for record in records:
                futures.append(producer.send(self._topics[record.kind], key=record.key, value=record.value,
                                             headers=self._headers[record.kind]))
            producer.flush(timeout=self._timeout_s)
        except KafkaError as exc:
            log.debug("kafka send failed: %r", exc)
        acked = 0
        for future in futures:
            if not (future.is_done and future.succeeded()):
                break
            acked += 1
        self._count_partitions(futures[:acked])
        if acked < len(records):
            self.close()
        return acked

    def _count_partitions(self, futures: list) -> None:
        """Per topic and partition, what Kafka acknowledged: the partition
        counters, and the skew gauge over the window."""
        if not futures:
            return
        sent: dict[str, Counter[int]] = {}
        for future in futures:
            meta = future.value
            sent.setdefault(meta.topic, Counter())[meta.partition] += 1
        for name, counts in sent.items():
            for partition, n in counts.items():
                metrics.EVENTS_PARTITION_RECORDS.labels(name, str(partition)).inc(n)
            self.skew.add(name, counts)
            known = self._producer.partitions_for(name) if self._producer is not None else None
            if known:
                metrics.EVENTS_PARTITION_SKEW.labels(name).set(self.skew.skew(name, len(known)))

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=0)
            except Exception:  # closing a producer to a dead broker may raise anything
                log.debug("closing kafka producer failed", exc_info=True)
            self._producer = None
