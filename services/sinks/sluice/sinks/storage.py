"""A region's durable event storage: JSON-lines files, one per tenant per day.

    <data_dir>/<region>/billing/<tenant>/<YYYY-MM-DD>.jsonl   one event per line
    <data_dir>/<region>/audit/<tenant>/<YYYY-MM-DD>.jsonl     hash-chained lines
    <data_dir>/<region>/audit/<tenant>/<YYYY-MM-DD>.head      count and last hash
    <data_dir>/<region>/review/<tenant>/<YYYY-MM-DD>.jsonl    cases flagged for a human
    <data_dir>/<region>/deadletter/<YYYY-MM-DD>.jsonl         records read from the local spool
                                                              that could not be stored (with Kafka
                                                              they go to the dead-letter topic)

Days are UTC, from the event's occurred_at. Files only grow; every batch is
fsync'd (files, then heads, then new folders) before `write` returns, and only
then does the sink commit its Kafka offsets. An event id already in its file
is skipped, so a batch redelivered after a crash is stored once. A line torn
by a crash mid-write is cut off when the file is next opened.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from sluice.sinks import audit_chain
from sluice.storage.files import fsync_dir, replace_durably

log = logging.getLogger(__name__)



def day_of(event: Message) -> str:
    occurred = event.request.occurred_at  # type: ignore[attr-defined]
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


class RegionalStore:
    def __init__(self, data_dir: str | os.PathLike[str], region: str, open_files: int = 512) -> None:
        self.region = region
        self.root = Path(data_dir) / region
        self._files: OrderedDict[Path, _File] = OrderedDict()
        self._open_files = open_files

    def path(self, kind: str, tenant: str, day: str) -> Path:
        return self.root / kind / tenant / f"{day}.jsonl"

    # --- writing -------------------------------------------------------------

    def write(self, events: Iterable[tuple[str, Message]]) -> tuple[int, int]:
        """Stores (kind, event) pairs durably; returns (stored, duplicates)."""
        pending: dict[Path, list[str]] = {}
        touched_heads: list[_File] = []
        stored = duplicates = 0
        for kind, event in events:
            tenant = event.request.tenant_id  # type: ignore[attr-defined]
            state = self._open(kind, tenant, day_of(event))
            event_id = event.event_id  # type: ignore[attr-defined]
            if event_id in state.ids:
                duplicates += 1
                continue
            state.ids.add(event_id)
            doc = event_doc(event)
            if kind == "audit":
                state.seq += 1
                text, state.last_hash = audit_chain.line(state.seq, state.last_hash, doc)
                if state not in touched_heads:
                    touched_heads.append(state)
            else:
                text = audit_chain.canonical(doc)
            pending.setdefault(state.path, []).append(text + "\n")
            stored += 1
        new_dirs: set[Path] = set()
        for path, lines in pending.items():
            if not path.exists():
                new_dirs.add(path.parent)
            with open(path, "a", encoding="utf-8") as f:
                f.write("".join(lines))
                f.flush()
                os.fsync(f.fileno())
        for state in touched_heads:
            _write_head(state)
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

    def _open(self, kind: str, tenant: str, day: str) -> _File:
        path = self.path(kind, tenant, day)
        state = self._files.get(path)
        if state is not None:
            self._files.move_to_end(path)
            return state
        state = _File(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "audit":
            state.last_hash = audit_chain.genesis(self.region, tenant, day)
        if path.exists():
            _cut_torn_line(path)
            for doc in _read_lines(path):
                if kind == "audit":
                    state.seq, state.last_hash = doc["seq"], doc["hash"]
                    doc = doc["event"]
                state.ids.add(doc["event_id"])
            if kind == "audit":
                _write_head(state)  # a crash between data and head left the head behind
        self._files[path] = state
        while len(self._files) > self._open_files:
            self._files.popitem(last=False)
        return state

    # --- reading ----------------------------------------------------------------

    def files(self, kind: str, tenant: str | None = None) -> Iterator[tuple[str, str, Path]]:
        """(tenant, day, path) of stored files, in tenant and day order."""
        base = self.root / kind
        tenants = [tenant] if tenant else sorted(p.name for p in base.iterdir() if p.is_dir()) if base.exists() else []
        for t in tenants:
            for path in sorted((base / t).glob("*.jsonl")):
                yield t, path.stem, path

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
            found = audit_chain.verify_lines(lines, audit_chain.genesis(self.region, t, day), head)
            problems += [p.describe(str(path)) for p in found]
        return problems


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
