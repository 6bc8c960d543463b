"""The spool: append-only files on local disk that hold observability rows PostgreSQL could not take yet.

A spool file (version 1) is a header followed by frames:

    header   b"LSDSPOOL1\\n"
    frame    payload length (4 bytes, big-endian) | CRC-32 of the payload (4 bytes, big-endian) | payload

A payload is one group of records (the rows of one `record()` call, which the writer commits in one transaction),
encoded by orjson as `[[table, value, ...], ...]`, values in field order. Typed fields are tagged by their declared
type: UUIDs as strings, datetimes as ISO 8601 with their UTC offset, Decimals as "d:<str>" and non-finite floats as
"f:<repr>" (JSON has neither). JSON values are stored as orjson writes them, which is also how the writer sends them
to PostgreSQL, so a replayed row is the row a direct write would have inserted.

A crash while appending leaves a torn last frame: the reader detects it (short read or CRC mismatch), skips the rest
of that file and counts it in `torn_frames`; it is never fatal.

Files are named `<UUIDv7 hex>.spool`, so sorting names sorts them by creation time. The process that owns a file
(the one that wrote it, or the one that adopted it after its writer died) holds an exclusive `flock` on it until it
deletes it; a process adopts only files it can lock, so two processes never replay the same file. A new file is
written under a hidden temporary name, locked, and only then renamed, so no other process can lock it first.

Every method does blocking file I/O: the writer calls them through `asyncio.to_thread`, one at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import math
import os
import struct
import time
import typing
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any
from uuid import UUID

import orjson

from lsd.ids import uuid7
from lsd.records import Record

log = logging.getLogger("lsd.spool")

HEADER = b"LSDSPOOL1\n"
SUFFIX = ".spool"
TEMP_SUFFIX = ".tmp"
SEGMENT_BYTES = 16 * 1024 * 1024  # start a new file past this size: a file is deleted only once all its rows are in
STALE_TEMP_S = 60.0
_FRAME = struct.Struct(">II")
_MAX_FRAME = 1 << 30


class SpoolDecodeError(ValueError):
    """A frame whose checksum is right but whose payload is not a group of known records."""


def _number_out(value: Any) -> Any:
    if isinstance(value, Decimal):
        return f"d:{value}"  # str(Decimal) round-trips exactly: digits, exponent, sign of zero, NaN, Infinity
    if isinstance(value, float) and not math.isfinite(value):
        return f"f:{value!r}"  # orjson would write null
    return value


def _number_in(value: Any) -> Any:
    if isinstance(value, str):
        return Decimal(value[2:]) if value.startswith("d:") else float(value[2:])
    return value


def _same(value: Any) -> Any:
    return value


@dataclass(frozen=True, slots=True)
class _Codec:
    """How one record class is written to and read from a frame: `[table, value, ...]`, values in field order.

    Only the typed fields JSON cannot hold are converted (`special`: position in the list, encoder, decoder); the
    rest go to orjson as they are."""

    cls: type
    width: int  # 1 + the number of fields
    getter: Callable[[Any], tuple[Any, ...]]
    special: tuple[tuple[int, Callable[[Any], Any], Callable[[Any], Any]], ...]

    @classmethod
    def of(cls, record_type: type) -> _Codec:
        hints = typing.get_type_hints(record_type)
        names = tuple(f.name for f in dataclasses.fields(record_type))
        special: list[tuple[int, Callable[[Any], Any], Callable[[Any], Any]]] = []
        for position, name in enumerate(names, start=1):
            kinds = set(typing.get_args(hints[name])) or {hints[name]}
            if UUID in kinds:
                special.append((position, _same, UUID))  # orjson writes a UUID as its canonical string
            elif datetime in kinds:
                special.append((position, datetime.isoformat, datetime.fromisoformat))
            elif float in kinds or Decimal in kinds:
                special.append((position, _number_out, _number_in))
        return cls(record_type, len(names) + 1, attrgetter("TABLE", *names), tuple(special))

    def encode(self, record: Any) -> list[Any]:
        values = list(self.getter(record))
        for position, encode, _ in self.special:
            value = values[position]
            if value is not None:
                values[position] = encode(value)
        return values

    def decode(self, values: list[Any]) -> Record:
        if len(values) != self.width:
            raise SpoolDecodeError(f"{self.cls.__name__}: {len(values) - 1} values for {self.width - 1} fields")
        for position, _, decode in self.special:
            value = values[position]
            if value is not None:
                values[position] = decode(value)
        record: Record = self.cls(*values[1:])
        return record


_CODECS = MappingProxyType({cls.TABLE: _Codec.of(cls) for cls in typing.get_args(Record)})


def encode_frame(group: Sequence[Record]) -> bytes:
    """One group of records as a frame. Raises TypeError (orjson.JSONEncodeError) for a value JSON cannot hold."""
    payload = orjson.dumps([_CODECS[record.TABLE].encode(record) for record in group])
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


def decode_payload(payload: bytes) -> list[Record]:
    """The records of one frame's payload; raises SpoolDecodeError when they are not records this version knows."""
    try:
        items = orjson.loads(payload)
        return [_CODECS[item[0]].decode(item) for item in items]
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise SpoolDecodeError(f"undecodable frame: {type(exc).__name__}: {exc}") from exc


def iter_frames(data: bytes | memoryview, offset: int) -> Iterator[tuple[int, bytes | None]]:
    """(end offset, payload) for each frame from `offset`; a last item with payload None marks a torn frame."""
    view = memoryview(data)
    while offset < len(view):
        if len(view) - offset < _FRAME.size:
            yield len(view), None
            return
        length, crc = _FRAME.unpack_from(view, offset)
        start = offset + _FRAME.size
        if length > _MAX_FRAME or start + length > len(view):
            yield len(view), None
            return
        payload = bytes(view[start : start + length])
        if zlib.crc32(payload) != crc:
            yield len(view), None
            return
        offset = start + length
        yield offset, payload


@dataclass(eq=False)
class Segment:
    """One spool file this process holds the lock on."""

    path: Path
    fd: int
    size: int
    read_offset: int = len(HEADER)
    data: bytes | None = None  # the whole file, loaded when its replay begins

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(eq=False)
class Chunk:
    """Groups read from the oldest segment; `last` when they end it (the file may be deleted once they commit)."""

    segment: Segment
    groups: list[list[Record]]
    last: bool

    @property
    def rows(self) -> int:
        return sum(len(group) for group in self.groups)


class Spool:
    """The spool directory as seen by one process: the files it holds, oldest first. No I/O until used."""

    def __init__(self, directory: Path, max_bytes: int, *, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.torn_frames = 0
        self._segments: list[Segment] = []
        self._open: Segment | None = None  # the file appends go to; sealed (None) once its replay begins

    @property
    def size_bytes(self) -> int:
        """Bytes in the files this process holds."""
        return sum(segment.size for segment in self._segments)

    @property
    def files(self) -> int:
        return len(self._segments)

    def pending(self) -> bool:
        """Whether a held file has frames not yet replayed (or is empty and waits to be deleted)."""
        return any(s is not self._open or s.size > len(HEADER) for s in self._segments)

    # -- writing -------------------------------------------------------------------------------------------

    def append(self, frames: Sequence[bytes]) -> tuple[int, str | None]:
        """Append frames and fsync. Returns how many leading frames are stored and, when not all, why not.

        Stops at the first frame that would take the directory past `max_bytes`; on a write error (disk full)
        the file is cut back to its previous end, so a failed append never leaves a torn frame behind."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            room = self.max_bytes - self._directory_bytes()
        except OSError as exc:
            return 0, f"cannot use spool directory {self.directory}: {exc.strerror}"
        count, size = 0, 0
        for frame in frames:
            if size + len(frame) > room:
                break
            count, size = count + 1, size + len(frame)
        reason = None if count == len(frames) else f"spool_max_bytes ({self.max_bytes}) reached"
        if count == 0:
            return 0, reason
        try:
            segment = self._writable_segment()
        except OSError as exc:
            return 0, f"cannot create a spool file in {self.directory}: {exc.strerror}"
        data = b"".join(frames[:count])
        try:
            _write_all(segment.fd, data, segment.size)
            os.fsync(segment.fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.ftruncate(segment.fd, segment.size)
            self._open = None  # never append after a failed write
            return 0, f"cannot write {segment.path}: {exc.strerror}"
        segment.size += len(data)
        return count, reason

    def append_groups(self, groups: Sequence[Sequence[Record]]) -> tuple[list[int], list[int], str | None]:
        """Encode and append groups: (indices stored, indices that cannot be encoded, why not all were stored).

        A group that cannot be encoded would be refused by PostgreSQL too (the writer encodes JSON alike)."""
        frames: list[bytes] = []
        positions: list[int] = []
        unencodable: list[int] = []
        for index, group in enumerate(groups):
            try:
                frames.append(encode_frame(group))
            except (TypeError, ValueError):
                unencodable.append(index)
            else:
                positions.append(index)
        count, reason = self.append(frames)
        return positions[:count], unencodable, reason

    def _writable_segment(self) -> Segment:
        if self._open is not None and self._open.size < self.segment_bytes:
            return self._open
        name = uuid7().hex
        temp = self.directory / f".{name}{TEMP_SUFFIX}"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Blocking: another process's orphan scan may hold it for a moment (and lets go of a fresh file).
            fcntl.flock(fd, fcntl.LOCK_EX)
            _write_all(fd, HEADER, 0)
            os.fsync(fd)
            path = self.directory / f"{name}{SUFFIX}"
            os.rename(temp, path)
            _fsync_directory(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        segment = Segment(path, fd, len(HEADER))
        self._segments.append(segment)
        self._open = segment
        return segment

    def _directory_bytes(self) -> int:
        total = 0
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.endswith((SUFFIX, TEMP_SUFFIX)):
                    with contextlib.suppress(OSError):
                        total += entry.stat(follow_symlinks=False).st_size
        return total

    # -- adopting and replaying ----------------------------------------------------------------------------

    def adopt_orphans(self) -> int:
        """Lock and take over files whose owner is gone (a crashed or closed process); returns how many."""
        try:
            entries = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return 0
        held = {segment.name for segment in self._segments}
        adopted = 0
        for name in entries:
            if name in held or not name.endswith((SUFFIX, TEMP_SUFFIX)):
                continue
            path = self.directory / name
            fd = _lock_existing(path)
            if fd is None:
                continue
            if name.endswith(TEMP_SUFFIX):
                # A writer died between creating and publishing this file (it holds no rows); a fresh one may be
                # a live writer's that has not locked it yet.
                if os.fstat(fd).st_mtime < time.time() - STALE_TEMP_S:
                    with contextlib.suppress(OSError):
                        path.unlink()
                os.close(fd)
                continue
            size = os.fstat(fd).st_size
            if os.pread(fd, len(HEADER), 0) != HEADER:
                self.torn_frames += 1
                log.error("spool file %s has no valid header; renamed to %s.corrupt and skipped", path, name)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(f"{name}.corrupt"))
                os.close(fd)
                continue
            self._segments.append(Segment(path, fd, size))
            adopted += 1
        self._segments.sort(key=lambda segment: segment.name)
        return adopted

    def read_chunk(self, max_rows: int) -> Chunk | None:
        """The next groups to replay (about `max_rows` rows, whole groups) from the oldest held file, or None."""
        if not self.pending():
            return None
        segment = self._segments[0]
        if segment is self._open:
            self._open = None  # seal it: appends from now on go to a new file, replayed after this one
        if segment.data is None:
            segment.data = _read_all(segment.fd, segment.size)
        groups: list[list[Record]] = []
        rows = 0
        offset = segment.read_offset
        for end, payload in iter_frames(segment.data, offset):
            if payload is None:
                self.torn_frames += 1
                log.warning(
                    "spool file %s: torn frame at byte %d (%d bytes skipped): a crash cut the last write short",
                    segment.path,
                    offset,
                    end - offset,
                )
            else:
                try:
                    group = decode_payload(payload)
                except SpoolDecodeError as exc:
                    self.torn_frames += 1
                    log.error("spool file %s: frame at byte %d skipped: %s", segment.path, offset, exc)
                else:
                    groups.append(group)
                    rows += len(group)
            offset = end
            if rows >= max_rows:
                break
        segment.read_offset = offset
        return Chunk(segment, groups, last=offset >= len(segment.data))

    def release(self, chunk: Chunk) -> None:
        """Call once `chunk`'s rows are committed: deletes its file when the chunk was the file's last."""
        if not chunk.last:
            return
        segment = chunk.segment
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        os.close(segment.fd)
        self._segments.remove(segment)

    def close(self) -> None:
        """Release every lock, keeping the files: the next process to open the spool replays them."""
        for segment in self._segments:
            os.close(segment.fd)
        self._segments.clear()
        self._open = None


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read_all(fd: int, size: int) -> bytes:
    parts: list[bytes] = []
    offset = 0
    while offset < size:
        part = os.pread(fd, size - offset, offset)
        if not part:
            break
        parts.append(part)
        offset += len(part)
    return b"".join(parts)


def _lock_existing(path: Path) -> int | None:
    """An fd holding the exclusive lock on `path`, or None when another process holds it or the file is gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The owner may have deleted (and so released) the file between our open and our lock.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except OSError:
        os.close(fd)
        return None
    return fd


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
