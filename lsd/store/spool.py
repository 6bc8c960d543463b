"""The spool: append-only files on local disk that hold observability rows PostgreSQL could not take yet.

The file format (a header naming the version, the database and each table's columns, then CRC-checked frames) is
lsd.store.spool_format's; this module owns the directory: which process holds which file, appending, adopting the
files of dead processes, replaying them oldest first, and setting aside the files of another database.

A crash while appending leaves a torn last frame: the reader detects it (short read or CRC mismatch), skips it and
counts it in `torn_frames`; it is never fatal. A frame damaged inside a file (its checksum fails, its length fits) is
skipped alone, the frames after it are replayed, and the file is kept as `.corrupt` once replayed.

Files are named `<UUIDv7 hex>.spool`, so sorting names sorts them by creation time. The process that owns a file
(the one that wrote it, or the one that adopted it after its writer died) holds an exclusive `flock` on it until it
deletes it; a process adopts only files it can lock, so two processes never replay the same file. A new file is
written under a hidden temporary name, locked, and only then renamed, so no other process can lock it first.

A file names the database it was written for (once the writer has connected to it; files written before name none
and are replayed into the database the writer reaches). A file naming another database than `Spool.identity` is never
replayed: it is moved to `foreign/` beside the spool, for an operator (`lsd spool replay --dir` with the right
LSD_DATABASE_URL), or left where it is when the spool is itself such a folder.

Every method does blocking file I/O: the writer calls them through `asyncio.to_thread`, one at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lsd.ids import uuid7
from lsd.records import Record
from lsd.store.spool_format import (
    CURRENT,
    HEADER_V1,
    MAX_HEADER,
    DatabaseIdentity,
    Layout,
    SpoolDecodeError,
    SpoolHeaderError,
    decode_payload,
    encode_frame,
    header,
    iter_frames,
    read_header,
)

__all__ = [
    "HEADER_V1",
    "SUFFIX",
    "Chunk",
    "DatabaseIdentity",
    "Segment",
    "Spool",
    "SpoolDecodeError",
    "decode_payload",
    "encode_frame",
    "iter_frames",
]

log = logging.getLogger("lsd.spool")

SUFFIX = ".spool"
TEMP_SUFFIX = ".tmp"
FOREIGN_DIR = "foreign"  # beside the spool's files: files of another database, never replayed here
REJECTED_DIR = "rejected"  # beside the spool's files: groups PostgreSQL refused, for an operator; never replayed
SEGMENT_BYTES = 16 * 1024 * 1024  # start a new file past this size: a file is deleted only once all its rows are in
STALE_TEMP_S = 60.0


@dataclass(eq=False)
class Segment:
    """One spool file this process holds the lock on."""

    path: Path
    fd: int
    size: int
    layout: Layout  # from its header: how to read its frames, and the database it was written for
    read_offset: int = 0  # the header's end until its replay begins
    data: bytes | None = None  # the whole file, loaded when its replay begins
    damaged: bool = False  # a frame inside it failed its checksum (skipped): keep the file when done

    def __post_init__(self) -> None:
        self.read_offset = self.read_offset or self.layout.size

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def database(self) -> DatabaseIdentity | None:
        return self.layout.database


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

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        identity: DatabaseIdentity | None = None,
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        # The database rows are written to, once known: new files name it, and files naming another are set aside.
        self.identity = identity
        # Where files of another database go; None (in a folder that is already such a place): left where they are.
        self.foreign_dir: Path | None = None if directory.name == FOREIGN_DIR else directory / FOREIGN_DIR
        self.torn_frames = 0
        self.foreign_files = 0  # files of another database met by this process (set aside, never replayed)
        self._segments: list[Segment] = []
        self._skipped: set[str] = set()  # foreign files left in place: not adopted again
        self._open: Segment | None = None  # the file appends go to; sealed (None) once its replay begins

    @property
    def size_bytes(self) -> int:
        """Bytes in the files this process holds."""
        return sum(segment.size for segment in self._segments)

    @property
    def files(self) -> int:
        return len(self._segments)

    @property
    def current(self) -> Segment | None:
        """The file appends go to now (None before the first append, or once it is sealed)."""
        return self._open

    def pending(self) -> bool:
        """Whether a held file has frames not yet replayed (or is empty and waits to be deleted)."""
        return any(s is not self._open or s.size > s.layout.size for s in self._segments)

    # -- writing -------------------------------------------------------------------------------------------

    def append(self, frames: Sequence[bytes]) -> tuple[int, str | None]:
        """Append frames and fsync. Returns how many leading frames are stored and, when not all, why not.

        Stops at the first frame that would take the directory past `max_bytes`; on a write error (disk full)
        the file is cut back to its previous end, so a failed append never leaves a torn frame behind."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            room = self.max_bytes - self._directory_bytes()
            if self._needs_new_segment():
                room -= len(header(self.identity))  # the new file's header counts too
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

    def _needs_new_segment(self) -> bool:
        current = self._open
        return current is None or current.size >= self.segment_bytes or current.database != self.identity

    def _writable_segment(self) -> Segment:
        if self._open is not None and not self._needs_new_segment():
            return self._open
        name = uuid7().hex
        temp = self.directory / f".{name}{TEMP_SUFFIX}"
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            # Blocking: another process's orphan scan may hold it for a moment (and lets go of a fresh file).
            fcntl.flock(fd, fcntl.LOCK_EX)
            start = header(self.identity)
            _write_all(fd, start, 0)
            os.fsync(fd)
            path = self.directory / f"{name}{SUFFIX}"
            os.rename(temp, path)
            fsync_directory(self.directory)
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        segment = Segment(path, fd, len(start), dataclasses.replace(CURRENT, database=self.identity, size=len(start)))
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
        held = {segment.name for segment in self._segments} | self._skipped
        adopted = 0
        for name in entries:
            if name in held or not name.endswith((SUFFIX, TEMP_SUFFIX)):
                continue
            path = self.directory / name
            fd = lock_existing(path)
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
            try:
                layout = read_header(os.pread(fd, min(size, MAX_HEADER), 0))
            except SpoolHeaderError as exc:
                self.torn_frames += 1
                log.error("spool file %s: %s; renamed to %s.corrupt and skipped", path, exc, name)
                with contextlib.suppress(OSError):
                    path.rename(path.with_name(f"{name}.corrupt"))
                os.close(fd)
                continue
            self._segments.append(Segment(path, fd, size, layout))
            adopted += 1
        self._segments.sort(key=lambda segment: segment.name)
        return adopted

    def read_chunk(self, max_rows: int) -> Chunk | None:
        """The next groups to replay (about `max_rows` rows, whole groups) from the oldest held file, or None."""
        while self.pending() and self._foreign(self._segments[0]):
            self._set_aside(self._segments[0])
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
                if end < len(segment.data):  # inside the file: damaged, not cut short; the file is kept (release)
                    segment.damaged = True
                    log.error(
                        "spool file %s: damaged frame at byte %d (%d bytes, its rows lost) skipped; the frames "
                        "after it are replayed and the file is kept as %s.corrupt",
                        segment.path,
                        offset,
                        end - offset,
                        segment.name,
                    )
                else:
                    log.warning(
                        "spool file %s: torn frame at byte %d (%d bytes skipped): a crash cut the last write short",
                        segment.path,
                        offset,
                        end - offset,
                    )
            else:
                try:
                    group = segment.layout.decode(payload)
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

    def _foreign(self, segment: Segment) -> bool:
        return not (segment.database is None or self.identity is None or segment.database.matches(self.identity))

    def _set_aside(self, segment: Segment) -> None:
        """Never replay a file of another database: move it to `foreign_dir` (or leave it), and let go of it."""
        self.foreign_files += 1
        self._segments.remove(segment)
        if segment is self._open:
            self._open = None
        where = f"left in {self.directory}"
        try:
            if self.foreign_dir is None:
                self._skipped.add(segment.name)
            else:
                self.foreign_dir.mkdir(parents=True, exist_ok=True)
                segment.path.rename(self.foreign_dir / segment.name)
                fsync_directory(self.foreign_dir)
                where = f"moved to {self.foreign_dir}"
        except OSError as exc:
            self._skipped.add(segment.name)
            where = f"left in {self.directory} ({exc.strerror})"
        finally:
            os.close(segment.fd)
        log.error(
            "spool file %s was written for database %s, not %s: %s, not replayed; replay it into its database "
            "with `lsd spool replay --dir DIR`",
            segment.name,
            segment.database,
            self.identity,
            where,
        )

    def release(self, chunk: Chunk) -> None:
        """Call once `chunk`'s rows are committed: deletes its file when the chunk was the file's last (one that
        held a damaged frame is kept, renamed `.corrupt`, for whoever wants to look at it)."""
        if not chunk.last:
            return
        segment = chunk.segment
        with contextlib.suppress(FileNotFoundError):
            if segment.damaged:
                segment.path.rename(segment.path.with_name(f"{segment.name}.corrupt"))
            else:
                segment.path.unlink()
        os.close(segment.fd)
        self._segments.remove(segment)

    def discard(self, segment: Segment) -> None:
        """Delete a held file whose rows are all safe elsewhere (the journal's, once committed), and let go of it."""
        if segment not in self._segments:
            return
        with contextlib.suppress(FileNotFoundError):
            segment.path.unlink()
        os.close(segment.fd)
        self._segments.remove(segment)
        if segment is self._open:
            self._open = None

    @property
    def segments(self) -> list[Segment]:
        """The files this process holds, oldest first."""
        return list(self._segments)

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


def lock_existing(path: Path) -> int | None:
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


def fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
