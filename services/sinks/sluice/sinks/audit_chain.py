"""The audit hash chain: how a stored audit line is sealed and checked.

Each tenant's audit records of one day, from one Kafka partition, form a
chain (records from the local spool, which has no partitions, form one chain
per tenant per day). A tenant's records are keyed to one partition, and a
partition has one owning consumer at a time, so each chain has one writer;
the store also fences each append with a lock on the tenant's folder (see
storage.py), for the moments a rebalance leaves two consumers believing they
own it. A line is
`{"seq": n, "prev": <hash of line n-1>, "hash": <this line's hash>, "event": {...}}`
where hash = SHA-256 of "seq \\n prev \\n canonical JSON of the event". The
first line's prev is a genesis hash naming region, tenant, day and partition,
so a file cannot be passed off as another's. A `.head` file beside it holds the count
and last hash, so cutting records off the end is detected too.

Pure functions, no I/O: the store writes with them and the verifier reads.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any


def canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def genesis(region: str, tenant: str, day: str, partition: int | None = None) -> str:
    """The hex SHA-256 a chain starts from: names region, tenant, UTC day
    (YYYY-MM-DD) and the Kafka partition (None: a chain of the local spool,
    and chains stored before partitions were named)."""
    name = f"sluice-audit:{region}:{tenant}:{day}" + (f":p{partition}" if partition is not None else "")
    return hashlib.sha256(name.encode()).hexdigest()


def seal(seq: int, prev: str, event: dict[str, Any]) -> str:
    return hashlib.sha256(f"{seq}\n{prev}\n{canonical(event)}".encode()).hexdigest()


def line(seq: int, prev: str, event: dict[str, Any]) -> tuple[str, str]:
    """(the JSON line without newline, its hash)."""
    digest = seal(seq, prev, event)
    return canonical({"seq": seq, "prev": prev, "hash": digest, "event": event}), digest


@dataclass(frozen=True)
class Problem:
    line: int  # 1-based; 0 for the file as a whole
    event_id: str
    what: str

    def describe(self, path: str) -> str:
        where = f"{path}:{self.line}" if self.line else path
        return f"{where}: {self.what}" + (f" (event_id {self.event_id})" if self.event_id else "")


def verify_lines(lines: list[str], first_prev: str, head: tuple[int, str] | None) -> list[Problem]:
    """Problems in one chained file, naming each broken line."""
    problems: list[Problem] = []
    prev, expected_seq = first_prev, 1
    for number, text in enumerate(lines, start=1):
        try:
            doc = json.loads(text)
            seq, stored_prev, stored_hash, event = doc["seq"], doc["prev"], doc["hash"], doc["event"]
        except (ValueError, KeyError, TypeError):
            problems.append(Problem(number, "", "not a chained audit record (unreadable JSON or missing fields)"))
            return problems  # nothing after it can be placed in the chain
        event_id = str(event.get("event_id", "")) if isinstance(event, dict) else ""
        if seal(seq, stored_prev, event) != stored_hash:
            problems.append(Problem(number, event_id, "record was edited: its content does not match its hash"))
        elif seq != expected_seq or stored_prev != prev:
            what = (f"out of order: sequence {seq} where {expected_seq} belongs" if seq != expected_seq
                    else "chain broken: previous hash does not match the record before it")
            problems.append(Problem(number, event_id, what + " (a record was removed, inserted or moved)"))
        prev, expected_seq = stored_hash, seq + 1
    if head is not None:
        count, last = head
        if count != len(lines) or (lines and last != prev):
            problems.append(Problem(0, "", f"file holds {len(lines)} records but its head records {count}: "
                                          "records were removed from or added to the end"))
    return problems
