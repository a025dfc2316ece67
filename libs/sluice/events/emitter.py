"""Hands events from the request path to the spool and on to Kafka.

`emit` only puts the event on a bounded queue (no I/O on the request path).
A background thread, on a group-commit tick, writes what is queued to the
spool (one fsync per tick) and then
forwards from the spool's cursor to this region's Kafka; the cursor advances
only past what Kafka acknowledged. Kafka down, slow or back again, and a
restart, all take the same path; events are replayed in the order written.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from google.protobuf.message import Message

from sluice.config.events import EventsSettings
from sluice.events.records import EVENT_TYPES, SpoolRecord
from sluice.events.spool import Spool, open_shared
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


class CrossRegionEvent(ValueError):
    """An event of another region's tenant: it may not be spooled or sent here."""


class Forwarder(Protocol):
    region: str

    def send(self, records: Sequence[SpoolRecord]) -> int: ...

    def close(self) -> None: ...


class EventEmitter:
    def __init__(self, region: str, spool: Spool, forwarder: Forwarder | None, *, queue_max: int,
                 batch_max: int, retry_s: float, alarm_ratio: float, group_commit_s: float = 0.01) -> None:
        if forwarder is not None and forwarder.region != region:
            raise CrossRegionEvent(f"a {forwarder.region} forwarder cannot serve region {region}")
        self.region = region
        self.spool = spool
        self._forwarder = forwarder
        # A deque, not a queue.Queue: appends and pops are atomic, and the
        # writer polls on a timer, so no lock or wake-up is needed per event.
        self._queue: collections.deque[SpoolRecord] = collections.deque()
        self._queue_max = queue_max
        self._in_hand = False
        self._emitted = {kind: metrics.EVENTS_EMITTED.labels(kind) for kind in EVENT_TYPES}
        self._batch_max = batch_max
        # At least a little: a zero tick would spin.
        self._tick_s = max(group_commit_s, 0.001)
        self._retry_s = retry_s
        self._alarm_bytes = int(spool.max_bytes * alarm_ratio)
        self._alarmed = False
        self._kafka_up: bool | None = None
        self._retry_at = 0.0
        self._stopping = threading.Event()
        self._drain_s = 0.0
        self._thread = threading.Thread(target=self._run, name=f"sluice-events-{region}", daemon=True)

    # --- request path -------------------------------------------------------

    def emit(self, kind: str, region: str, tenant_id: str, event: Message) -> None:
        """Queues one event of a tenant homed in `region`; never blocks on I/O
        unless the writer has fallen a whole queue behind."""
        if region != self.region:
            raise CrossRegionEvent(f"event of tenant {tenant_id} (region {region}) refused by the {self.region} emitter")
        if kind not in EVENT_TYPES:
            raise ValueError(f"unknown event kind {kind!r}")
        record = SpoolRecord(kind, tenant_id.encode(), event.SerializeToString())
        self._emitted[kind].inc()
        if len(self._queue) < self._queue_max:
            self._queue.append(record)
        else:
            # Slower, never lossy: write it through ourselves.
            metrics.EVENTS_QUEUE_OVERFLOW.inc()
            self.spool.append([record])

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing spooled: every event is where it is going."""
        return not self._queue and not self._in_hand and self.spool.empty

    @property
    def accepting(self) -> bool:
        """False while the spool is full: new requests could not be billed."""
        return not self.spool.full

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float) -> None:
        """Writes everything queued to the spool and gives Kafka until
        `timeout_s` to take the backlog; what it does not take stays spooled."""
        self._drain_s = timeout_s
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s + 5)
        if self._forwarder is not None:
            self._forwarder.close()
        self.spool.close()

    def _run(self) -> None:
        # The Kafka forwarder creates the region's missing topics at start.
        prepare = getattr(self._forwarder, "prepare", None)
        if prepare is not None:
            prepare()
        stop_deadline: float | None = None
        held: list[SpoolRecord] = []
        while True:
            backlog = self._forwardable()
            batch = held + self._take(wait=not backlog and not held and not self._stopping.is_set())
            held = []
            if batch:
                try:
                    self.spool.append(batch)
                except OSError:
                    # The disk refused: hold them in memory, retry, and say so loudly.
                    log.exception("event spool write failed; %d events held in memory", len(batch))
                    held = batch
                    self._stopping.wait(0.5)
                    if not self._stopping.is_set():
                        continue
            self._in_hand = bool(held)
            if self._forwardable():
                self._forward()
            if batch or self._alarmed:
                self._check_alarm()
            if self._stopping.is_set() and not self._queue and not held:
                if stop_deadline is None:
                    stop_deadline = time.monotonic() + self._drain_s
                if self.spool.empty or self._forwarder is None or time.monotonic() > stop_deadline \
                        or self._kafka_up is False:
                    return

    def _forwardable(self) -> bool:
        return (self._forwarder is not None and not self.spool.empty
                and time.monotonic() >= self._retry_at)

    def _take(self, wait: bool) -> list[SpoolRecord]:
        """A batch from the queue. The writer looks at the queue on a timer
        rather than being woken by each event: waking a second thread per
        request would make the event loop give up the GIL each time, and one
        fsync per tick covers every event of that tick."""
        if wait:
            self._stopping.wait(self._tick_s)
        batch: list[SpoolRecord] = []
        if self._queue:
            self._in_hand = True  # taken from the queue, not yet in the spool
        try:
            while len(batch) < self._batch_max:
                batch.append(self._queue.popleft())
        except IndexError:
            pass
        return batch

    def _forward(self) -> None:
        pending = self.spool.read(self._batch_max)
        if not pending:
            return
        assert self._forwarder is not None
        acked = self._forwarder.send([record for record, _ in pending])
        if acked:
            self.spool.commit(pending[acked - 1][1])
            metrics.EVENTS_SENT.inc(acked)
        if acked == len(pending):
            self._set_kafka_up(True)
        else:
            metrics.EVENTS_SEND_FAILURES.inc()
            self._retry_at = time.monotonic() + self._retry_s
            self._set_kafka_up(False)

    def _set_kafka_up(self, up: bool) -> None:
        metrics.EVENTS_KAFKA_UP.set(1 if up else 0)
        if up != self._kafka_up:
            if up:
                log.info("events: Kafka for region %s is reachable; spool backlog %d bytes", self.region,
                         self.spool.pending_bytes)
            else:
                log.warning("events: Kafka for region %s is unreachable or slow; events stay in the spool "
                            "(%d bytes) and are retried every %.1f s", self.region, self.spool.pending_bytes,
                            self._retry_s)
        self._kafka_up = up

    def _check_alarm(self) -> None:
        pending = self.spool.pending_bytes
        if pending >= self._alarm_bytes and not self._alarmed:
            self._alarmed = True
            log.error("event spool for region %s holds %d of %d bytes: at the limit the gateway refuses new "
                      "requests (503) until Kafka takes the backlog", self.region, pending, self.spool.max_bytes)
        elif pending < self._alarm_bytes * 0.9 and self._alarmed:
            self._alarmed = False
            log.info("event spool for region %s back to %d bytes", self.region, pending)


def open_emitter(region: str, settings: EventsSettings) -> EventEmitter:
    """The emitter for this deployment's region: its own spool folder, and its
    own Kafka cluster when one is configured."""
    from sluice.events.kafka_forwarder import KafkaForwarder

    # Shared: without Kafka, a sink in this process acknowledges from the same spool.
    spool = open_shared(Path(settings.spool_dir) / region, settings.spool_max_bytes, settings.spool_segment_bytes)
    forwarder = (KafkaForwarder(region, settings.kafka_bootstrap, settings.send_timeout_seconds,
                                partitions=settings.partitions,
                                replication_factor=settings.replication_factor,
                                skew_window_s=settings.skew_window_seconds)
                 if settings.kafka_bootstrap else None)
    return EventEmitter(region, spool, forwarder, queue_max=settings.queue_max_events,
                        batch_max=settings.batch_max_events, retry_s=settings.kafka_retry_seconds,
                        alarm_ratio=settings.spool_alarm_ratio, group_commit_s=settings.group_commit_ms / 1000)
