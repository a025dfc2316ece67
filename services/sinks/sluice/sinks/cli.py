"""`sluice audit verify` and `sluice billing report`: read a region's sink storage."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from sluice.config import Settings
from sluice.sinks import report
from sluice.sinks.storage import RegionalStore, partition_of


def _day(text: str) -> str:
    try:
        # DTZ007: the parse only checks a calendar day; no time zone is involved.
        return datetime.strptime(text, "%Y-%m-%d").strftime("%Y-%m-%d")  # noqa: DTZ007
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a YYYY-MM-DD day: {text!r}") from None


# The top-level commands this module adds (sluice.runtime.cli dispatches them here), and what it
# lends other command modules (routing's report reads the billing records).
COMMANDS = ("audit", "billing")


def add_commands(sub: argparse._SubParsersAction) -> None:
    for name, help_text in (("audit", "audit records in the sink's storage"),
                            ("billing", "billing records in the sink's storage")):
        group = sub.add_parser(name, help=help_text).add_subparsers(dest="action", required=True)
        if name == "audit":
            cmd = group.add_parser("verify", help="check every audit hash chain; name each broken record")
            cmd.add_argument("--tenant", help="only this tenant (default: all)")
        else:
            cmd = group.add_parser("report", help="usage and cost per model per day")
            cmd.add_argument("--tenant", help="only this tenant (default: all)")
            today = datetime.now(UTC).strftime("%Y-%m-%d")
            cmd.add_argument("--from", dest="day_from", type=_day, default="0001-01-01", help="first day (UTC)")
            cmd.add_argument("--to", dest="day_to", type=_day, default=today, help="last day (UTC), inclusive")
        cmd.add_argument("--data-dir", help="storage root (default: sinks.data_dir)")
        cmd.add_argument("--region", help="the region whose storage to read (default: the `region` setting)")


def billing_events(data_dir: str, region: str, tenant: str | None) -> Iterator[dict[str, Any]] | None:
    """A region's stored billing records (all tenants' when `tenant` is
    None), as JSON documents; None when the region has no storage there."""
    store = RegionalStore(data_dir, region)
    return store.events("billing", tenant) if store.root.exists() else None


def run(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO,
        provided: dict[str, Any] | None = None) -> int:
    store = RegionalStore(args.data_dir or settings.sinks.data_dir, settings.region)
    if not store.root.exists():
        err.write(f"sluice: no storage for region {settings.region} under {store.root.absolute()} "
                  "(sinks.data_dir, or --data-dir; a relative one is taken from the current directory)\n")
        return 2
    if args.command == "audit":
        problems = store.verify_audit(args.tenant)
        out.writelines(problem + "\n" for problem in problems)
        if problems:
            err.write(f"audit verification FAILED: {len(problems)} problem(s)\n")
            return 1
        files = list(store.files("audit", args.tenant))
        # One chain per tenant per day per Kafka partition ("p3"; none from the local spool).
        counts = [(tenant, _chain_name(day, path), store.count(path))
                  for tenant, day, path in files]
        out.write(f"audit verification ok: {sum(n for *_, n in counts)} record(s) in {len(files)} file(s) "
                  f"in region {settings.region}\n")
        out.writelines(f"  {tenant}  {chain}  {n} record(s)\n" for tenant, chain, n in counts)
        return 0
    scope = (store, args.tenant, args.day_from, args.day_to)
    out.write(report.render(report.report(*scope), report.cache_report(*scope)))
    return 0




def _chain_name(day: str, path: Path) -> str:
    """A chain as `audit verify` lists it: its day, and its partition ("2026-11-18 p3")."""
    partition = partition_of(path)
    return f"{day} p{partition}" if partition is not None else day


PROVIDES = {"billing_events": billing_events}
