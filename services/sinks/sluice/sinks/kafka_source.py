"""The sink's records from the region's Kafka topics (production).

One consumer group per region (`<sinks.group_id>-<region>`), offsets
committed only after a batch is stored; records the sink cannot take go to
`sluice.deadletter.<region>` with the reason and their topic/partition/offset.

A sink process may run several sources (sinks.consumers), each a member of
the group: Kafka gives each partition to one member at a time, and moves
partitions when members join or leave (a rebalance, inside `poll`, after the
previous batch was committed). Records are keyed by tenant, so a tenant's
records are read by one member at a time, in order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from kafka import ConsumerRebalanceListener, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from sluice.config.sinks import SinksSettings
from sluice.events.records import (
    EVENT_TYPES,
    REASON_HEADER,
    SOURCE_HEADER,
    bootstrap_servers,
    dead_letter_topic,
    topic,
)
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


class _Ownership(ConsumerRebalanceListener):
    """Keeps a source's view of the partitions the group gave it, and their metrics."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            try:
                metrics.SINK_PARTITION_LAG.remove(tp.topic, str(tp.partition))
            except KeyError:
                pass  # never polled from it
        self._source.assigned = frozenset()

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        owned = frozenset((tp.topic, tp.partition) for tp in assigned)
        self._source.assigned = owned
        metrics.SINK_PARTITIONS_ASSIGNED.labels(self._source.member).set(len(owned))
        log.info("sink consumer %s of region %s owns %d partition(s): %s", self._source.member,
                 self._source.region, len(owned),
                 ", ".join(f"{t}[{p}]" for t, p in sorted(owned)) or "none")


class KafkaSource:
    def __init__(self, region: str, bootstrap: str, settings: SinksSettings,
                 member: int = 0) -> None:
        """The region's topics on `bootstrap` ("host:port[,...]"), read by one
        member of the group `<sinks.group_id>-<region>`; `member` tells this
        process's consumers apart (client id, logs, metrics)."""
        self.region = region
        self.member = str(member)
        self._bootstrap = bootstrap_servers(bootstrap)
        self._settings = settings
        self._topics = [topic(kind, region) for kind in EVENT_TYPES]
        self._consumer: KafkaConsumer | None = None
        self._producer: KafkaProducer | None = None
        # (topic, partition) pairs the group assigned this member; replaced
        # whole on each rebalance, so other threads may read it.
        self.assigned: frozenset[tuple[str, int]] = frozenset()
        self.description = f"Kafka {','.join(self._bootstrap)}"

    def connect(self, stopping: threading.Event) -> None:
        self.close()
        self._consumer = KafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=f"{self._settings.group_id}-{self.region}",
            client_id=f"sluice-sink-{self.region}-{self.member}", enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=self._settings.batch_max_records,
            # Back within a second of the broker's return, not kafka-python's 30 s backoff.
            reconnect_backoff_max_ms=1000,
        )
        self._wait_for_topics(self._consumer, stopping)
        self._consumer.subscribe(self._topics, listener=_Ownership(self))
        self._producer = KafkaProducer(bootstrap_servers=self._bootstrap, acks="all", enable_idempotence=True,
                                       client_id=f"sluice-sink-dlq-{self.region}", reconnect_backoff_max_ms=1000)

    def _wait_for_topics(self, consumer: KafkaConsumer, stopping: threading.Event) -> None:
        """Joins the group only once the topics' partitions are known: joining
        earlier (a broker just restarted) can leave the sink assigned nothing."""
        logged = False
        while not stopping.is_set():
            missing = [t for t in self._topics if not consumer.partitions_for_topic(t)]
            if not missing:
                return
            if not logged:
                log.warning("waiting for topics %s on %s", missing, ",".join(self._bootstrap))
                logged = True
            stopping.wait(0.5)

    def poll(self, max_records: int, timeout_s: float) -> Sequence:
        assert self._consumer is not None
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        for tp, batch in polled.items():
            partition = str(tp.partition)
            metrics.SINK_PARTITION_RECORDS.labels(tp.topic, partition).inc(len(batch))
            highwater = self._consumer.highwater(tp)
            if highwater is not None and batch:
                lag = max(highwater - batch[-1].offset - 1, 0)
                metrics.SINK_PARTITION_LAG.labels(tp.topic, partition).set(lag)
        return [r for batch in polled.values() for r in batch]

    def dead_letter(self, rejected: Sequence) -> None:
        assert self._producer is not None
        sent = []
        for record, reason in rejected:
            log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason)
            sent.append(self._producer.send(
                dead_letter_topic(self.region), key=record.key, value=record.value or b"",
                headers=[*(record.headers or []), (REASON_HEADER, reason.encode()),
                         (SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode())]))
        for future in sent:
            future.get(timeout=30)  # raises unless acknowledged: then nothing is committed

    def ack(self) -> None:
        assert self._consumer is not None
        try:
            self._consumer.commit()
        except KafkaError as exc:
            # Rebalanced away mid-batch: the next owner gets these again and skips what is stored.
            log.warning("offset commit failed (%s); the batch will be delivered again", exc)

    def close(self) -> None:
        for client in (self._consumer, self._producer):
            if client is not None:
                try:
                    client.close()
                except Exception:
                    log.debug("closing a kafka client failed", exc_info=True)
        self._consumer = self._producer = None
        self.assigned = frozenset()
