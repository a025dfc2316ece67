"""`events`: billing and audit events, spooled then sent to the region's Kafka."""

from __future__ import annotations

from pydantic import Field, field_validator

from sluice.config.base import Section, check_bootstrap


class EventsSettings(Section):
    """Billing and audit events: spooled to disk, then sent to this region's Kafka."""

    # This region's Kafka cluster, host:port[,host:port...]. Empty: events stay
    # in the spool, until a sink in the gateway's process stores them from
    # there (the embedded default for `make run`: `serve all,simulator,sinks`).
    kafka_bootstrap: str = ""
    # Append-only spool: every event is written (and fsync'd) here first and
    # leaves it once Kafka has acknowledged it; one subfolder per region.
    spool_dir: str = "var/spool"
    # At this size the gateway refuses new requests (503) rather than serve
    # traffic it could not bill; a warning is logged from spool_alarm_ratio.
    spool_max_bytes: int = Field(1 << 30, ge=64 * 1024)
    spool_alarm_ratio: float = Field(0.8, gt=0, le=1)
    spool_segment_bytes: int = Field(16 << 20, ge=4096)
    # Events waiting for the background writer; when full, the request path
    # writes to the spool itself rather than drop one.
    queue_max_events: int = Field(10_000, ge=1)
    # Most events per Kafka round trip (and per spool write).
    batch_max_events: int = Field(500, ge=1)
    # How long the writer gathers events before one fsync covers them all:
    # the most an event waits before it is on disk (a SIGKILL loses at most
    # this window; SIGTERM writes everything). Never adds to a request's
    # latency; shorter costs CPU: at 10 ms, fsyncs cost ~0.5 ms per request
    # at 200 requests/s on a 2-core machine.
    group_commit_ms: float = Field(50.0, ge=0, le=1000)
    # A Kafka send not acknowledged this long counts as Kafka being down;
    # it is then retried from the spool after kafka_retry_seconds.
    send_timeout_seconds: float = Field(10.0, gt=0)
    kafka_retry_seconds: float = Field(1.0, gt=0)
    # Partitions of each event topic (sluice.<kind>.<region>, dead letters):
    # records are keyed by tenant, so one tenant stays on one partition (in
    # order) and the region's sink scales to this many consumers. Sluice
    # creates missing topics with this count (the forwarder at start, or
    # `sluice events create-topics`); an existing topic with fewer partitions
    # is reported (log + sluice_events_topic_partitions_short), never
    # repartitioned: that would move tenants between partitions.
    partitions: int = Field(12, ge=1, le=1024)
    # Replicas of topics Sluice creates; -1: the brokers' default.replication.factor.
    replication_factor: int = Field(-1, ge=-1, le=16)
    # The window over which sluice_events_partition_skew compares the busiest
    # partition's share of records with an even share.
    skew_window_seconds: float = Field(60.0, ge=1, le=3600)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _v_bootstrap(cls, value: str) -> str:
        return check_bootstrap(value)

    @field_validator("replication_factor")
    @classmethod
    def _v_replication(cls, value: int) -> int:
        if value == 0:
            raise ValueError("replication_factor is -1 (the brokers' default) or at least 1")
        return value
