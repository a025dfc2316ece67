"""`sluice events spooled`: the events a gateway's spool holds, not yet taken by Kafka (or by a
sink in the gateway's process)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TextIO

from google.protobuf import json_format

from sluice.config import Settings
from sluice.events.records import EVENT_TYPES
from sluice.events.spool import pending_records

# The top-level commands this module adds (sluice.runtime.cli dispatches them here).
COMMANDS = ("events",)


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    spooled = sub.add_parser("events", help="events in a gateway's spool").add_subparsers(dest="action", required=True)
    cmd = spooled.add_parser("spooled", help="print the events not taken from the spool yet (by Kafka, or without "
                                             "Kafka by a sink in the gateway's process)")
    cmd.add_argument("--spool-dir", help="spool root (default: events.spool_dir)")
    cmd.add_argument("--region", help="the region (default: the `region` setting)")


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO,
        provided: dict[str, Any] | None = None) -> int:
    """Runs `sluice events spooled`: one JSON line per event waiting, oldest first; 2 when the
    spool folder does not exist."""
    return _spooled(args, settings, out, err)


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
