"""The sink's records from the region's local event spool, when it has no Kafka.

`make run` has no Kafka: the gateway's events stay in its spool
(`events.spool_dir/<region>`). A sink in the same process reads them from
the spool's cursor and, once a batch is stored, moves the cursor past it as
Kafka's acknowledgement would. So the spool empties as events are stored, a
restart resumes after the last acknowledged record, and a crash between
store and acknowledgement redelivers records the store already holds and
skips (by event id). The spool admits one process: the sink shares the
gateway's spool object in-process (`open_shared`); a sink in another process
gets the spool only when no gateway holds it.

Records are presented as the Kafka adapter's are (the region's topic for
their kind, the producer's headers), so the sink decodes and checks them on
the one code path. What it cannot store is written, with the reason, to the
storage's dead-letter file, since there is no dead-letter topic.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from sluice.config.events import EventsSettings
from sluice.events.records import kafka_headers, topic
from sluice.events.spool import Position, Spool, open_shared
from sluice.sinks.storage import RegionalStore

# How often an empty spool is looked at again within one poll.
_POLL_STEP_S = 0.05


class SpoolDelivery(NamedTuple):
    """One spooled event, shaped like the Kafka record it would have been."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    # Where it is in the spool: the position of its first byte.
    position: Position


class SpoolSource:
    def __init__(self, region: str, events: EventsSettings, store: RegionalStore) -> None:
        """Opens the spool now, so a spool held by another process is an
        error at start (SpoolInUse), not a retry loop."""
        self.region = region
        self.folder = Path(events.spool_dir) / region
        self._events = events
        self._store = store
        self._spool: Spool | None = self._open()
        # The position after the last record polled and not yet acknowledged.
        self._polled: Position | None = None
        self._stopping = threading.Event()
        self.description = f"local spool {self.folder} (no Kafka)"

    def _open(self) -> Spool:
        return open_shared(self.folder, self._events.spool_max_bytes, self._events.spool_segment_bytes)

    def connect(self, stopping: threading.Event) -> None:
        self._stopping = stopping
        if self._spool is None:
            self._spool = self._open()
        self._polled = None  # from the cursor again: what was not acknowledged comes again

    def poll(self, max_records: int, timeout_s: float) -> Sequence[SpoolDelivery]:
        assert self._spool is not None, "poll before connect"
        deadline = time.monotonic() + timeout_s
        while True:
            pending = self._spool.read(max_records, self._polled)
            remaining = deadline - time.monotonic()
            if pending or remaining <= 0 or self._stopping.is_set():
                break
            self._stopping.wait(min(_POLL_STEP_S, remaining))
        out = []
        start = self._polled or self._spool.cursor
        for record, after in pending:
            out.append(SpoolDelivery(topic(record.kind, self.region), record.key, record.value,
                                     kafka_headers(record.kind), start))
            start = after
        if pending:
            self._polled = pending[-1][1]
        return out

    def dead_letter(self, rejected: Sequence[tuple[SpoolDelivery, str]]) -> None:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        self._store.dead_letter([
            {"reason": reason, "source": f"{self.folder}@{record.position.segment}:{record.position.offset}",
             "topic": record.topic, "key_b64": b64(record.key), "value_b64": b64(record.value),
             "headers": {name: value.decode("utf-8", "replace") for name, value in record.headers}}
            for record, reason in rejected])

    def ack(self) -> None:
        if self._spool is not None and self._polled is not None:
            self._spool.commit(self._polled)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None
        self._polled = None
