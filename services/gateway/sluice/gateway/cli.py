"""`sluice events spooled`: the events a gateway's spool holds, not yet taken by Kafka (or by a
sink in the gateway's process); `sluice events create-topics`: the region's event topics, with
events.partitions partitions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format

from sluice.config import Settings
from sluice.config.base import check_bootstrap
from sluice.events.records import EVENT_TYPES
from sluice.events.spool import pending_records

# The top-level commands this module adds (sluice.runtime.cli dispatches them here).
COMMANDS = ("events",)


def add_commands(sub: argparse._SubParsersAction) -> None:
    spooled = sub.add_parser("events", help="events in a gateway's spool").add_subparsers(dest="action", required=True)
    cmd = spooled.add_parser("spooled", help="print the events not taken from the spool yet (by Kafka, or without "
                                             "Kafka by a sink in the gateway's process)")
    cmd.add_argument("--spool-dir", help="spool root (default: events.spool_dir)")
    cmd.add_argument("--region", help="the region (default: the `region` setting)")
    create = spooled.add_parser(
        "create-topics", help="create the region's event topics that do not exist, with "
                              "events.partitions partitions; report those with fewer")
    create.add_argument("--partitions", type=_partitions,
                        help="partitions per topic, 1-1024 (default: events.partitions)")
    create.add_argument("--bootstrap", help="the region's Kafka (default: events.kafka_bootstrap)")
    create.add_argument("--region", help="the region (default: the `region` setting)")


def _partitions(text: str) -> int:
    """--partitions: a whole number 1-1024 (events.partitions' bounds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be 1-1024, not {value}")
    return value


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO,
        provided: dict[str, Any] | None = None) -> int:
    """Runs `sluice events spooled`: one JSON line per event waiting, oldest first; 2 when the
    spool folder does not exist. Runs `sluice events create-topics`: one line per topic; 0 when
    every topic has the configured partitions or more, 1 when one has fewer (it is left as it
    is), 2 without a Kafka cluster or when it cannot be reached."""
    if args.action == "create-topics":
        return _create_topics(args, settings, out, err)
    return _spooled(args, settings, out, err)


def _create_topics(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from kafka.errors import KafkaError

    from sluice.events.partitions import ensure_topics

    bootstrap = args.bootstrap or settings.events.kafka_bootstrap
    if not bootstrap:
        err.write("sluice: no Kafka cluster (events.kafka_bootstrap, or --bootstrap)\n")
        return 2
    try:
        check_bootstrap(bootstrap)
    except ValueError as exc:
        err.write(f"sluice: --bootstrap: {exc}\n")
        return 2
    partitions = args.partitions or settings.events.partitions
    try:
        states = ensure_topics(bootstrap, args.region or settings.region, partitions,
                               settings.events.replication_factor,
                               timeout_s=settings.events.send_timeout_seconds)
    except KafkaError as exc:
        err.write(f"sluice: Kafka at {bootstrap}: {exc!r}\n")
        return 2
    for state in states:
        what = ("created" if state.created else
                f"exists, {state.short} fewer than {partitions}: not repartitioned"
                if state.short else "exists")
        out.write(f"{state.topic}  {state.partitions} partition(s)  {what}\n")
    return 1 if any(state.short for state in states) else 0


def _spooled(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    folder = Path(args.spool_dir or settings.events.spool_dir) / settings.region
    if not folder.exists():
        err.write(f"sluice: no event spool at {folder}\n")
        return 2
    waiting = 0
    for record in pending_records(folder):
        doc = json_format.MessageToDict(EVENT_TYPES[record.kind].FromString(record.value),
                                        preserving_proto_field_name=True)
        out.write(json.dumps({"kind": record.kind, **doc}) + "\n")
        waiting += 1
    if not waiting:  # on stderr: stdout stays one JSON line per event
        err.write(f"sluice: no events waiting in {folder} (Kafka or a sink has taken them all)\n")
    return 0
