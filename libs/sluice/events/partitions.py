"""Event topics' partitions: creating them with `events.partitions`, and measuring skew.

Records are keyed by tenant id (records.partition_for), so a tenant's records
share one partition and keep their order. Two consequences live here:

- Topics are created with the configured count when missing; an existing
  topic with fewer partitions is reported (log + metric), never grown: more
  partitions would move tenants to other partitions, and a tenant's records
  on two partitions at once lose their order.
- One hot tenant loads one partition. `SkewMeter` measures by how much the
  busiest partition exceeds an even share over a sliding window.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sluice.events.records import bootstrap_servers, region_topics
from sluice.telemetry import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicState:
    """What `ensure_topics` found or did for one topic."""

    topic: str
    partitions: int  # the topic's partition count now
    created: bool  # created by this call with the configured count
    short: int  # partitions it lacks compared with the configured count (0: enough)


def ensure_topics(
    bootstrap: str,
    region: str,
    partitions: int,
    replication_factor: int = -1,
    timeout_s: float = 10.0,
) -> list[TopicState]:
    """Creates the region's event topics (records.region_topics) that do not
    exist, with `partitions` partitions and `replication_factor` replicas (-1:
    the brokers' default), and checks the count of those that do. A topic
    with fewer partitions than `partitions` is logged (WARNING) and counted in
    sluice_events_topic_partitions_short; it is left as it is. Returns one
    TopicState per topic, in region_topics order. Raises kafka.errors.KafkaError
    (or NoBrokersAvailable) when the cluster cannot be reached or refuses."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import TopicAlreadyExistsError

    names = region_topics(region)
    timeout_ms = int(timeout_s * 1000)
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap_servers(bootstrap),
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        client_id=f"sluice-topics-{region}",
    )
    try:
        counts = _partition_counts(admin, names)
        missing = [name for name in names if name not in counts]
        created: set[str] = set()
        if missing:
            try:
                admin.create_topics(
                    {
                        name: {
                            "num_partitions": partitions,
                            "replication_factor": replication_factor,
                        }
                        for name in missing
                    },
                    timeout_ms=timeout_ms,
                    wait_for_metadata=True,
                )
                created = set(missing)
            except TopicAlreadyExistsError:
                pass  # another gateway created them meanwhile: read their count below
            counts = _partition_counts(admin, names)
    finally:
        admin.close()
    states = []
    for name in names:
        have = counts.get(name, partitions if name in created else 0)
        short = max(partitions - have, 0)
        metrics.EVENTS_TOPIC_PARTITIONS_SHORT.labels(name).set(short)
        if name in created:
            log.info("events: created topic %s with %d partitions", name, have)
        elif short:
            log.warning(
                "events: topic %s has %d partitions, fewer than events.partitions (%d); it is not "
                "repartitioned (that would move tenants between partitions and break their order): "
                "at most %d sink consumers share its load",
                name,
                have,
                partitions,
                have,
            )
        states.append(TopicState(name, have, name in created, short))
    return states


def _partition_counts(admin, names: list[str]) -> dict[str, int]:
    """Partition count of each of `names` that exists (the others are absent)."""
    found = {}
    for described in admin.describe_topics(names):
        if described.get("error_code", 0) == 0 and described.get("partitions"):
            found[described["name"] if "name" in described else described["topic"]] = len(
                described["partitions"]
            )
    return found


class SkewMeter:
    """Records per partition of each topic over a sliding window of `window_s`
    seconds (kept as `buckets` slices, so the window slides by window_s/buckets),
    and the skew that they show. Not thread-safe: one forwarder thread uses it."""

    def __init__(
        self, window_s: float, buckets: int = 6, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if window_s <= 0 or buckets < 1:
            raise ValueError("window_s must be positive and buckets at least 1")
        self._slice_s = window_s / buckets
        self._buckets = buckets
        self._clock = clock
        # topic -> deque of (slice number, records per partition in that slice)
        self._slices: dict[str, deque[tuple[int, Counter[int]]]] = {}

    def add(self, topic: str, counts: Mapping[int, int]) -> None:
        """Counts records sent to `topic` now: partition -> records."""
        now = int(self._clock() // self._slice_s)
        slices = self._slices.setdefault(topic, deque())
        if not slices or slices[-1][0] != now:
            slices.append((now, Counter()))
        slices[-1][1].update(counts)
        self._expire(slices, now)

    def skew(self, topic: str, partitions: int) -> float:
        """The busiest partition's share of `topic`'s records in the window,
        divided by the even share 1/`partitions`: 1.0 is perfectly even,
        `partitions` is everything on one partition; 0.0 when the window holds
        no records. Raises ValueError when `partitions` < 1."""
        if partitions < 1:
            raise ValueError(f"a topic has at least one partition, not {partitions}")
        slices = self._slices.get(topic)
        if not slices:
            return 0.0
        self._expire(slices, int(self._clock() // self._slice_s))
        total: Counter[int] = Counter()
        for _, counts in slices:
            total.update(counts)
        records = sum(total.values())
        return max(total.values()) * partitions / records if records else 0.0

    def _expire(self, slices: deque[tuple[int, Counter[int]]], now: int) -> None:
        while slices and slices[0][0] <= now - self._buckets:
            slices.popleft()
