"""The wire contract of events on Kafka: topics, headers, encoding, cost.

One place decides which topic an event goes to, so a region's producer and
its sink cannot disagree, and one place decides what a readable record is,
so the sink's dead-letter reasons match what the producer writes.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from google.protobuf.message import DecodeError, Message

from sluice.config.tenants import TENANT_ID_PATTERN
from sluice.events.v1 import events_pb2

# The tenant ids settings accept; event ids are what the gateway makes (hex), or similar.
_TENANT_ID = re.compile(TENANT_ID_PATTERN)
_EVENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}\Z")

SCHEMA_VERSION = "1"
TYPE_HEADER = "sluice-event-type"
VERSION_HEADER = "sluice-schema-version"
# Set on dead letters: why, and where the record came from.
REASON_HEADER = "sluice-dead-letter-reason"
SOURCE_HEADER = "sluice-dead-letter-source"

EVENT_TYPES: dict[str, type[Message]] = {
    "billing": events_pb2.BillingEvent,
    "audit": events_pb2.AuditEvent,
    # Cases a safety rule flagged for a human (services/safety).
    "review": events_pb2.ReviewEvent,
}


class MalformedEvent(ValueError):
    """A Kafka record a sink cannot take; the message is the dead-letter reason."""


class SpoolRecord(NamedTuple):
    """One event as it waits in the spool and travels on Kafka."""

    kind: str  # a key of EVENT_TYPES
    key: bytes  # the tenant id: one tenant's events share a partition
    value: bytes  # the serialized event


def topic(kind: str, region: str) -> str:
    if kind not in EVENT_TYPES:
        raise ValueError(f"unknown event kind {kind!r}")
    return f"sluice.{kind}.{region}"


def dead_letter_topic(region: str) -> str:
    return f"sluice.deadletter.{region}"


def region_topics(region: str) -> list[str]:
    """Every topic a region's deployment uses: one per event kind, and dead letters."""
    return [topic(kind, region) for kind in EVENT_TYPES] + [dead_letter_topic(region)]


def kafka_headers(kind: str) -> list[tuple[str, bytes]]:
    return [(TYPE_HEADER, kind.encode()), (VERSION_HEADER, SCHEMA_VERSION.encode())]


def decode(headers: list[tuple[str, bytes]] | None, value: bytes | None) -> tuple[str, Message]:
    """(kind, event) of a Kafka record, or MalformedEvent naming what is wrong."""
    found = dict(headers or ())
    raw_kind, raw_version = found.get(TYPE_HEADER), found.get(VERSION_HEADER)
    if raw_kind is None:
        raise MalformedEvent(f"missing header {TYPE_HEADER}")
    kind = raw_kind.decode("utf-8", "replace")
    if kind not in EVENT_TYPES:
        raise MalformedEvent(f"unknown event type {kind!r}")
    version = raw_version.decode("utf-8", "replace") if raw_version is not None else None
    if version != SCHEMA_VERSION:
        raise MalformedEvent(f"unsupported schema version {version!r} (this sink reads {SCHEMA_VERSION!r})")
    try:
        event = EVENT_TYPES[kind].FromString(value or b"")
    except DecodeError as exc:
        raise MalformedEvent(f"{kind} event does not decode: {exc}") from None
    request = event.request
    if not event.event_id or not request.tenant_id or not request.region:
        raise MalformedEvent(f"{kind} event lacks event_id, request.tenant_id or request.region")
    # Both become parts of storage paths downstream: only the shapes Sluice issues.
    # fullmatch: Python's `$` would let a trailing newline through.
    if not _TENANT_ID.fullmatch(request.tenant_id) or not _EVENT_ID.fullmatch(event.event_id):
        raise MalformedEvent(f"{kind} event has an invalid tenant id or event id")
    return kind, event


def partition_for(key: bytes, partitions: int) -> int:
    """The partition (0..partitions-1) a record keyed `key` (a tenant id) goes to
    on a topic of `partitions` partitions: Kafka's default partitioner for keyed
    records (murmur2 of the key, sign bit cleared, modulo the count), which both
    kafka-python and the Java client use. Stable for a given count, so one
    tenant's records share one partition and stay in order; a change of the
    count moves tenants (hence topics are never repartitioned silently).
    Raises ValueError when `partitions` < 1."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    from kafka.partitioner.default import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def bootstrap_servers(bootstrap: str) -> list[str]:
    """The host:port list of an events.kafka_bootstrap setting ("a:9092, b:9092")."""
    return [server.strip() for server in bootstrap.split(",") if server.strip()]
