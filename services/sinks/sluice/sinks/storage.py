"""A region's durable event storage: JSON-lines files, one per tenant per day
(and per Kafka partition: `<YYYY-MM-DD>.p<N>.jsonl`; from the local spool, or
stored before partitions were named, `<YYYY-MM-DD>.jsonl`).

    <data_dir>/<region>/billing/<tenant>/<YYYY-MM-DD>.p<N>.jsonl   one event per line
    <data_dir>/<region>/audit/<tenant>/<YYYY-MM-DD>.p<N>.jsonl     hash-chained lines
    <data_dir>/<region>/audit/<tenant>/<YYYY-MM-DD>.p<N>.head      count and last hash
    <data_dir>/<region>/review/<tenant>/<YYYY-MM-DD>.p<N>.jsonl    cases flagged for a human
    <data_dir>/<region>/deadletter/<YYYY-MM-DD>.jsonl         records read from the local spool
                                                              that could not be stored (with Kafka
                                                              they go to the dead-letter topic)

Days are UTC, from the event's occurred_at. Files only grow; every batch is
fsync'd (files, then heads, then new folders) before `write` returns, and only
then does the sink commit its Kafka offsets. An event id already in its file
is skipped, so a batch redelivered after a crash is stored once. A line torn
by a crash mid-write is cut off when the file is next opened.

Several writers (sink consumers in one process, each with its own store, or
sink replicas on one filesystem): a partition has one owner at a time, so a
file has one writer at a time, but ownership moves on a rebalance, and a
consumer the group dropped may still finish a batch. So every append to a
file happens under an exclusive lock (flock) on its tenant's folder, and a
store whose cached view of a file (size, ids, chain tail) no longer matches
the file's size re-reads it first: the chain is continued from what is on
disk, never from a stale tail, and ids another writer stored are skipped.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from sluice.sinks import audit_chain
from sluice.storage.files import fsync_dir, replace_durably

log = logging.getLogger(__name__)

# A stored file's name: its UTC day, and the Kafka partition its records came from.
_FILE_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})(?:\.p(\d+))?\.jsonl\Z")

def day_of(event: Message) -> str:
    occurred = event.request.occurred_at
    seconds = occurred.seconds if occurred.seconds or occurred.nanos else 0
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def event_doc(event: Message) -> dict[str, Any]:
    return json_format.MessageToDict(event, preserving_proto_field_name=True)


@dataclass
class _File:
    """What the store knows of one open file: the ids in it, and for audit the chain tail."""

    path: Path
    ids: set[str] = field(default_factory=set)
    seq: int = 0
    last_hash: str = ""
    # The file's size as this store last wrote or read it: another size means
    # another writer appended since, and the state is read again.
    size: int = 0


class RegionalStore:
    def __init__(self, data_dir: str | os.PathLike[str], region: str, open_files: int = 512) -> None:
        self.region = region
        self.root = Path(data_dir) / region
        self._files: OrderedDict[Path, _File] = OrderedDict()
        self._open_files = open_files

    def path(self, kind: str, tenant: str, day: str, partition: int | None = None) -> Path:
        """The file of a tenant's `kind` records of `day` (YYYY-MM-DD, UTC) from
        Kafka partition `partition` (None: from the local spool)."""
        suffix = f".p{partition}" if partition is not None else ""
        return self.root / kind / tenant / f"{day}{suffix}.jsonl"

    # --- writing -------------------------------------------------------------

    def write(self, events: Iterable[tuple[str, Message]]
              | Iterable[tuple[str, Message, int | None]]) -> tuple[int, int]:
        """Stores (kind, event) or (kind, event, partition) tuples durably, in
        their order; partition is the Kafka partition the event was read from
        (None or absent: the local spool). Returns (stored, duplicates).
        Raises OSError when the disk refuses; what was not fsync'd then is
        written again on redelivery."""
        grouped: dict[Path, tuple[str, str, str, int | None, list[Message]]] = {}
        for item in events:
            kind, event = item[0], item[1]
            partition = item[2] if len(item) > 2 else None
            tenant = event.request.tenant_id
            day = day_of(event)
            path = self.path(kind, tenant, day, partition)
            grouped.setdefault(path, (kind, tenant, day, partition, []))[4].append(event)
        stored = duplicates = 0
        new_dirs: set[Path] = set()
        for path, (kind, tenant, day, partition, group) in grouped.items():
            if not path.parent.exists():
                new_dirs.add(path.parent)
            path.parent.mkdir(parents=True, exist_ok=True)
            with _fence(path.parent):
                state = self._open(kind, tenant, day, partition)
                lines = []
                for event in group:
                    event_id = event.event_id
                    if event_id in state.ids:
                        duplicates += 1
                        continue
                    state.ids.add(event_id)
                    doc = event_doc(event)
                    if kind == "audit":
                        state.seq += 1
                        text, state.last_hash = audit_chain.line(state.seq, state.last_hash, doc)
                    else:
                        text = audit_chain.canonical(doc)
                    lines.append(text + "\n")
                    stored += 1
                if not lines:
                    continue
                if not path.exists():
                    new_dirs.add(path.parent)
                try:
                    with open(path, "a", encoding="utf-8") as f:
                        f.write("".join(lines))
                        f.flush()
                        os.fsync(f.fileno())
                        state.size = os.fstat(f.fileno()).st_size
                    if kind == "audit":
                        _write_head(state)
                except BaseException:
                    # Unknown what reached the disk: read the file again next time.
                    self._files.pop(path, None)
                    raise
        for folder in new_dirs:
            fsync_dir(folder)
            fsync_dir(folder.parent)
        return stored, duplicates

    def dead_letter(self, entries: list[dict[str, Any]]) -> Path:
        """Appends dead letters (JSON documents) to today's (UTC) dead-letter
        file, durably; for sources without a dead-letter topic."""
        path = self.root / "deadletter" / f"{datetime.now(UTC).strftime('%Y-%m-%d')}.jsonl"
        new = not path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(audit_chain.canonical(entry) + "\n" for entry in entries))
            f.flush()
            os.fsync(f.fileno())
        if new:
            fsync_dir(path.parent)
            fsync_dir(path.parent.parent)
        return path

    def _open(self, kind: str, tenant: str, day: str, partition: int | None = None) -> _File:
        """The state of a file, read from disk unless the cached one matches
        its size. Called with the file's fence held."""
        path = self.path(kind, tenant, day, partition)
        state = self._files.get(path)
        size = path.stat().st_size if path.exists() else 0
        if state is not None and state.size == size:
            self._files.move_to_end(path)
            return state
        if state is not None:
            log.info("%s changed since this sink last wrote it (another consumer owned its "
                     "partition): reading it again", path)
        state = _File(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "audit":
            state.last_hash = audit_chain.genesis(self.region, tenant, day, partition)
        if path.exists():
            _cut_torn_line(path)
            for doc in _read_lines(path):
                if kind == "audit":
                    state.seq, state.last_hash = doc["seq"], doc["hash"]
                    doc = doc["event"]
                state.ids.add(doc["event_id"])
            state.size = path.stat().st_size
            if kind == "audit":
                _write_head(state)  # a crash between data and head left the head behind
        self._files[path] = state
        while len(self._files) > self._open_files:
            self._files.popitem(last=False)
        return state

    # --- reading ----------------------------------------------------------------

    def files(self, kind: str, tenant: str | None = None) -> Iterator[tuple[str, str, Path]]:
        """(tenant, day, path) of stored files, in tenant, day and partition
        order (a day may have a file per partition; see `partition_of`)."""
        base = self.root / kind
        tenants = [tenant] if tenant else sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []
        for t in tenants:
            named = []
            for path in (base / t).glob("*.jsonl"):
                match = _FILE_NAME.match(path.name)
                if match:
                    partition = int(match[2]) if match[2] is not None else -1
                    named.append((match[1], partition, path))
            for day, _, path in sorted(named):
                yield t, day, path

    def events(self, kind: str, tenant: str | None = None) -> Iterator[dict[str, Any]]:
        """Stored events as JSON documents (audit: the event inside each chained line)."""
        for _, _, path in self.files(kind, tenant):
            for doc in _read_lines(path):
                yield doc["event"] if kind == "audit" else doc

    def count(self, path: Path) -> int:
        """How many whole records a stored file holds."""
        return sum(1 for _ in _read_lines(path))

    def verify_audit(self, tenant: str | None = None) -> list[str]:
        """Every break in every audit chain, each naming file, line and event id."""
        problems: list[str] = []
        for t, day, path in self.files("audit", tenant):
            lines, head = _read_chain(path)
            first = audit_chain.genesis(self.region, t, day, partition_of(path))
            found = audit_chain.verify_lines(lines, first, head)
            problems += [p.describe(str(path)) for p in found]
        return problems


def partition_of(path: Path) -> int | None:
    """The Kafka partition a stored file's records came from (from its name,
    `<day>.p<N>.jsonl`); None for a file of the local spool (`<day>.jsonl`)."""
    match = _FILE_NAME.match(path.name)
    return int(match[2]) if match and match[2] is not None else None


@contextmanager
def _fence(folder: Path) -> Iterator[None]:
    """Holds an exclusive flock on `folder` (a tenant's folder) while one
    writer checks and appends to a file in it: no two stores, in this process
    or another on the same filesystem, interleave appends to one file."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _read_chain(path: Path, settle_s: float = 2.0) -> tuple[list[str], tuple[int, str] | None]:
    """A chained file's lines and its head, read consistently while a sink
    may be appending: it writes the lines, then the head, so lines beyond the
    head (or a head that moved while reading) are a write in progress; read
    again, for up to `settle_s`. A file that stays so is reported as it is."""
    deadline = time.monotonic() + settle_s
    while True:
        head = _read_head(path)
        # "replace": a write in progress may end mid-character.
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        settled = (head == _read_head(path) and (head is None or len(lines) <= head[0])
                   and (not text or text.endswith("\n")))
        if settled or time.monotonic() >= deadline:
            return lines, head
        time.sleep(0.02)


def _head_path(path: Path) -> Path:
    return path.with_suffix(".head")


def _write_head(state: _File) -> None:
    replace_durably(_head_path(state.path), json.dumps({"records": state.seq, "hash": state.last_hash}) + "\n")


def _read_head(path: Path) -> tuple[int, str] | None:
    try:
        doc = json.loads(_head_path(path).read_text(encoding="utf-8"))
        return int(doc["records"]), str(doc["hash"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return (-1, "")  # an unreadable head cannot vouch for the file's end


def _read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Whole lines only: one without its newline is being written by a
    running sink (or was torn by a crash, and is cut when the sink next opens
    the file)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for text in f:
            if text.strip() and text.endswith("\n"):
                yield json.loads(text)


def _cut_torn_line(path: Path) -> None:
    """Drops a last line without its newline: a write cut short by a crash."""
    with open(path, "rb+") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    log.warning("%s: cut a partial last line (%d bytes) left by an interrupted write", path, size - keep)
