"""`sinks`: the region's consumer of billing and audit records."""

from __future__ import annotations

from pydantic import Field

from sluice.config.base import Section


class SinksSettings(Section):
    """`sluice serve sinks`: this region's consumer of billing and audit topics
    (or, without events.kafka_bootstrap, of the local event spool)."""

    # Where the region's records are stored (see services/sinks/README.md);
    # `sluice audit verify` and `sluice billing report` read it too.
    data_dir: str = "var/sinks"
    # Consumer group; one per region, shared by the region's sink replicas.
    group_id: str = "sluice-sinks"
    # Most records written (and fsync'd) per batch before offsets are committed.
    batch_max_records: int = Field(1000, ge=1)
    poll_timeout_ms: int = Field(500, ge=10)
    # Consumers (threads, each a member of the group) this sink process runs
    # on the region's Kafka topics; partitions are shared among all members of
    # the group, so more than events.partitions in total leaves some idle.
    # Without Kafka (the local spool has one reader) the sink runs one.
    consumers: int = Field(1, ge=1, le=64)
