"""Sends spooled events to one region's Kafka cluster (kafka-python).

A forwarder is built for one region and derives its topics from that region
alone: there is no argument through which an event could reach another
region's topic or cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kafka import KafkaProducer
from kafka.errors import KafkaError

from sluice.events.records import EVENT_TYPES, SpoolRecord, bootstrap_servers, kafka_headers, topic

log = logging.getLogger(__name__)


class KafkaForwarder:
    def __init__(self, region: str, bootstrap: str, send_timeout_s: float) -> None:
        self.region = region
        self._bootstrap = bootstrap_servers(bootstrap)
        self._timeout_s = send_timeout_s
        self._topics = {kind: topic(kind, region) for kind in EVENT_TYPES}
        self._headers = {kind: kafka_headers(kind) for kind in EVENT_TYPES}
        self._producer: KafkaProducer | None = None

    def _connect(self) -> KafkaProducer:
        if self._producer is None:
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
        if acked < len(records):
            self.close()
        return acked

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=0)
            except Exception:  # noqa: BLE001 - closing a producer to a dead broker may raise anything
                log.debug("closing kafka producer failed", exc_info=True)
            self._producer = None
