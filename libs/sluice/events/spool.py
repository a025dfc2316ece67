"""The event spool: an append-only, fsync'd log between the request path and Kafka.

Every event is written here first; it leaves once Kafka has acknowledged it.
So one path serves Kafka up, Kafka down and a restart: the sender always
forwards from the spool's cursor, and whatever a dead process left behind is
still on disk, in order. Without Kafka (the embedded default) events stay
here until a sink in the same process (`make run`) stores them and
acknowledges them in the spool as Kafka would (see open_shared()).

On disk, in one folder per region: numbered segment files
(`00000000000000000001.seg`, ...) of frames `length:u32 crc32:u32 payload`,
and `cursor`, the (segment, offset) of the first record not yet acknowledged,
replaced atomically. A crash can only tear the tail of the newest segment;
that tail is cut off when the spool is opened. A frame that fails its CRC
anywhere else means the disk lied: the rest of that segment is moved aside
(`.corrupt`) and counted, never silently dropped.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sluice.events.records import EVENT_TYPES, SpoolRecord
from sluice.storage.files import fsync_dir, replace_durably
from sluice.telemetry import metrics

log = logging.getLogger(__name__)

_FRAME = struct.Struct(">II")  # payload length, crc32 of payload
_PAYLOAD = struct.Struct(">BH")  # kind code, key length
_KIND_CODES = {kind: code for code, kind in enumerate(EVENT_TYPES, start=1)}
_KINDS_BY_CODE = {code: kind for kind, code in _KIND_CODES.items()}
_SUFFIX = ".seg"
_MAX_FRAME = 64 << 20


class SpoolInUse(OSError):
    """Another process holds this spool."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


def encode(record: SpoolRecord) -> bytes:
    payload = _PAYLOAD.pack(_KIND_CODES[record.kind], len(record.key)) + record.key + record.value
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def _decode_payload(payload: bytes) -> SpoolRecord:
    code, key_len = _PAYLOAD.unpack_from(payload)
    start = _PAYLOAD.size
    return SpoolRecord(_KINDS_BY_CODE[code], payload[start:start + key_len], payload[start + key_len:])


class _Torn(Exception):
    """A frame that is cut short or fails its checksum."""


def _read_frame(f) -> bytes | None:
    head = f.read(_FRAME.size)
    if not head:
        return None
    if len(head) < _FRAME.size:
        raise _Torn("short frame header")
    length, crc = _FRAME.unpack(head)
    if length > _MAX_FRAME:
        raise _Torn(f"frame length {length} is implausible")
    payload = f.read(length)
    if len(payload) < length or zlib.crc32(payload) != crc:
        raise _Torn("frame cut short or checksum mismatch")
    if payload[0] not in _KINDS_BY_CODE or len(payload) < _PAYLOAD.size:
        raise _Torn(f"unknown record kind {payload[0]}")
    return payload


def _frames(f, end: int | None = None):
    """(payload, offset after it) for each whole frame from the file's
    position up to `end` (or its end); raises _Torn at a damaged frame."""
    while end is None or f.tell() < end:
        payload = _read_frame(f)
        if payload is None:
            return
        yield payload, f.tell()


class Spool:
    """Thread-safe: the request path may append (on queue overflow) while the
    sender thread appends, reads and commits."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int, segment_bytes: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # One writer per spool: two processes appending to one segment would
        # interleave frames. A second gateway on the same folder fails to start.
        self._lock_file = open(self.folder / "LOCK", "a")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise SpoolInUse(f"event spool {self.folder} is in use by another process; "
                             "give each gateway process its own events.spool_dir") from None
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._holders = 1  # see open_shared()
        self._cursor = self._read_cursor()
        segments = self._segments()
        for seq in segments:
            if seq < self._cursor.segment:
                (self.folder / _name(seq)).unlink()  # acknowledged before a crash cut the cleanup short
        segments = [s for s in segments if s >= self._cursor.segment] or [max(self._cursor.segment, 1)]
        self._sizes = {seq: self._size(seq) for seq in segments}
        self._active = segments[-1]
        self._cut_torn_tail(self._active)
        if self._cursor.segment not in self._sizes:
            self._cursor = Position(segments[0], 0)
        self._file = open(self.folder / _name(self._active), "ab")  # noqa: SIM115 - closed in close()
        fsync_dir(self.folder)
        metrics.SPOOL_CAPACITY_BYTES.set(max_bytes)
        metrics.SPOOL_BYTES.set(self.pending_bytes)

    # --- state -------------------------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes written and not yet acknowledged."""
        return sum(self._sizes.values()) - self._cursor.offset

    @property
    def cursor(self) -> Position:
        """Where the first record not yet acknowledged starts."""
        return self._cursor

    @property
    def full(self) -> bool:
        return self.pending_bytes >= self.max_bytes

    @property
    def empty(self) -> bool:
        return self.pending_bytes == 0

    # --- writing ----------------------------------------------------------------

    def append(self, records: Iterable[SpoolRecord]) -> None:
        """Writes records durably (fsync) before returning."""
        data = b"".join(encode(r) for r in records)
        if not data:
            return
        with self._lock:
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())
            self._sizes[self._active] += len(data)
            if self._sizes[self._active] >= self._segment_bytes:
                self._roll()
        metrics.SPOOL_BYTES.set(self.pending_bytes)

    def _roll(self) -> None:
        self._file.close()
        self._active += 1
        self._sizes[self._active] = 0
        self._file = open(self.folder / _name(self._active), "ab")  # noqa: SIM115 - closed in close()
        fsync_dir(self.folder)

    # --- reading and acknowledging -------------------------------------------

    def read(self, max_records: int, start: Position | None = None) -> list[tuple[SpoolRecord, Position]]:
        """Up to max_records from the cursor, or from `start` (a position an
        earlier read returned) when that is past it, each with the position
        after it."""
        out: list[tuple[SpoolRecord, Position]] = []
        with self._lock:
            position = self._cursor if start is None or start < self._cursor else start
            while len(out) < max_records:
                end = self._sizes.get(position.segment)
                if end is None:
                    break
                if position.offset >= end:
                    if position.segment == self._active:
                        break
                    position = Position(position.segment + 1, 0)
                    continue
                position = self._read_segment(position, end, max_records, out)
        return out

    def _read_segment(self, position: Position, end: int, limit: int,
                      out: list[tuple[SpoolRecord, Position]]) -> Position:
        with open(self.folder / _name(position.segment), "rb") as f:
            f.seek(position.offset)
            try:
                for payload, after in _frames(f, end):
                    position = Position(position.segment, after)
                    out.append((_decode_payload(payload), position))
                    if len(out) >= limit:
                        break
            except _Torn as exc:
                self._quarantine(position, exc)
        return position

    def _quarantine(self, position: Position, why: Exception) -> None:
        """Moves the unreadable rest of a segment aside; the spool goes on after it."""
        metrics.SPOOL_CORRUPT_SEGMENTS.inc()
        path = self.folder / _name(position.segment)
        aside = path.with_suffix(f".corrupt-at-{position.offset}")
        with open(path, "rb") as src, open(aside, "wb") as dst:
            src.seek(position.offset)
            dst.write(src.read())
        log.error("event spool %s is damaged at offset %d (%s): the rest of the segment was moved to %s",
                  path, position.offset, why, aside)
        if position.segment == self._active:
            self._file.truncate(position.offset)
        else:
            os.truncate(path, position.offset)
        self._sizes[position.segment] = position.offset

    def commit(self, position: Position) -> None:
        """Everything before `position` is acknowledged: forget it, durably."""
        with self._lock:
            replace_durably(self.folder / "cursor", f"{position.segment} {position.offset}\n")
            self._cursor = position
            for seq in [s for s in self._sizes if s < position.segment]:
                (self.folder / _name(seq)).unlink(missing_ok=True)
                del self._sizes[seq]
            fsync_dir(self.folder)
        metrics.SPOOL_BYTES.set(self.pending_bytes)

    def close(self) -> None:
        """Closes the files and releases the lock; for a spool from
        open_shared(), only once its last holder has closed it."""
        with _SHARED_LOCK:
            self._holders -= 1
            if self._holders > 0:
                return
            for key in [k for k, held in _SHARED.items() if held is self]:
                del _SHARED[key]
        with self._lock:
            self._file.close()
            self._lock_file.close()

    # --- opening ----------------------------------------------------------------

    def _segments(self) -> list[int]:
        return _segment_numbers(self.folder)

    def _size(self, seq: int) -> int:
        path = self.folder / _name(seq)
        return path.stat().st_size if path.exists() else 0

    def _read_cursor(self) -> Position:
        try:
            return _cursor_of(self.folder)
        except ValueError:
            log.error("event spool cursor in %s is unreadable; replaying the spool from its start", self.folder)
            return Position(0, 0)

    def _cut_torn_tail(self, seq: int) -> None:
        """A crash mid-append leaves a partial last frame: cut it off."""
        path = self.folder / _name(seq)
        if not path.exists():
            path.touch()
            return
        good = 0
        with open(path, "rb") as f:
            try:
                # The loop only advances `good` to the end of the last whole record.
                for _, good in _frames(f):  # noqa: B007
                    pass
            except _Torn:
                pass
        if good < self._sizes[seq]:
            log.warning("event spool %s: cut a torn record at its end (%d bytes) left by a crash",
                        path, self._sizes[seq] - good)
            os.truncate(path, good)
            self._sizes[seq] = good


# Spools opened through open_shared(), by resolved folder.
_SHARED: dict[Path, Spool] = {}
_SHARED_LOCK = threading.Lock()


def open_shared(folder: str | os.PathLike[str], max_bytes: int, segment_bytes: int) -> Spool:
    """This process's one Spool on `folder`, opened on first use.

    The lock admits one Spool per folder, even within a process. So when a
    region has no Kafka, the gateway's emitter (which appends) and a sink in
    the same process (which reads, stores and acknowledges, as Kafka would)
    share this one object; each caller closes it once and the last close
    releases it. Another process still gets SpoolInUse."""
    key = Path(folder).resolve()
    with _SHARED_LOCK:
        spool = _SHARED.get(key)
        if spool is not None:
            spool._holders += 1  # the module's own bookkeeping
            return spool
        spool = _SHARED[key] = Spool(folder, max_bytes, segment_bytes)
        return spool


def _name(seq: int) -> str:
    return f"{seq:020d}{_SUFFIX}"


def _segment_numbers(folder: Path) -> list[int]:
    return sorted(int(p.name[:-len(_SUFFIX)]) for p in folder.glob("*" + _SUFFIX) if p.name[:-len(_SUFFIX)].isdigit())


def _cursor_of(folder: Path) -> Position:
    """The acknowledged position; (0, 0) when none was written yet. ValueError if unreadable."""
    try:
        segment, offset = (folder / "cursor").read_text().split()
    except FileNotFoundError:
        return Position(0, 0)
    return Position(int(segment), int(offset))


def pending_records(folder: str | os.PathLike[str]) -> list[SpoolRecord]:
    """What a spool holds that Kafka has not acknowledged, read without
    taking the spool (a running gateway may be writing it): for inspection."""
    path = Path(folder)
    try:
        cursor = _cursor_of(path)
    except ValueError:
        cursor = Position(0, 0)
    out: list[SpoolRecord] = []
    for seq in _segment_numbers(path):
        if seq < cursor.segment:
            continue
        with open(path / _name(seq), "rb") as f:
            f.seek(cursor.offset if seq == cursor.segment else 0)
            try:
                for payload, _ in _frames(f):
                    out.append(_decode_payload(payload))
            except _Torn:
                pass  # a record being written right now, or damage: stop here
    return out
