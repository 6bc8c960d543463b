"""The journal: with `durability = "journal"`, every accepted group is on local disk, fsync'd, before the response.

Files are spool files (lsd.store.spool_format: header, CRC-checked frames) in `<spool_dir>/journal/`, written and
locked by one process as the spool's are. Appends are group-committed: the groups accepted while one write + fsync
is under way go together into the next, so one fsync (a few milliseconds) serves every request of that window.

A group stays counted against the file it went to until the writer has committed it in PostgreSQL (or moved it to
the spool, itself fsync'd); a file no longer appended to (past `segment_bytes`) is deleted once all its groups are.
After a crash, the journal files no live process holds are moved into the spool directory, where the writer adopts
and replays them like any spool file: idempotently, so rows that had been committed too are not inserted twice.

Blocking file I/O runs on the journal's own thread (one, so appends and deletions never race); the bookkeeping
runs on the event loop. No I/O until `open()`; `close()` deletes the files whose groups are all safe.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from lsd.records import Record
from lsd.store.spool import SUFFIX, DatabaseIdentity, Segment, Spool, encode_frame, fsync_directory, lock_existing

log = logging.getLogger("lsd.journal")

FAILURE_LOG_S = 60.0  # rows that cannot be journaled are logged at most this often

JOURNAL_DIR = "journal"  # beside the spool's files
SEGMENT_BYTES = 4 * 1024 * 1024  # start a new file past this size, so that committed files can be deleted

# One accepted group: its frame (None when it cannot be encoded), its row count, and who waits for the fsync.
_Pending = tuple[bytes | None, int, "asyncio.Future[Segment | None]"]


class JournalStats(Protocol):
    """The counters the journal updates (the writer's WriterStats)."""

    journaled_rows: int
    journal_fsyncs: int
    journal_failed_rows: int  # not journaled (disk full, spool_max_bytes, unencodable): queued anyway


@dataclass(frozen=True, slots=True)
class _Written:
    segment: Segment | None
    stored: int  # how many leading frames were written
    reason: str | None


class Journal:
    """The journal of one process. `append` from the event loop; `release` once a group's rows are safe."""

    def __init__(
        self, spool_dir: Path, max_bytes: int, stats: JournalStats, *, segment_bytes: int = SEGMENT_BYTES
    ) -> None:
        self.directory = spool_dir / JOURNAL_DIR
        self.spool_dir = spool_dir
        self.stats = stats
        self._files = Spool(self.directory, max_bytes, segment_bytes=segment_bytes)
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[_Pending] = []
        self._writing: asyncio.Future[_Written] | None = None
        self._outstanding: dict[Segment, int] = {}  # groups not yet safe in PostgreSQL or the spool, per file
        self._current: Segment | None = None  # the file the last append went to
        self._logged_at = -FAILURE_LOG_S  # when a failure to journal was last logged

    @property
    def identity(self) -> DatabaseIdentity | None:
        return self._files.identity

    @identity.setter
    def identity(self, identity: DatabaseIdentity | None) -> None:
        self._files.identity = identity  # new files name the database (read by the journal's thread: a plain swap)

    def open(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="lsd-journal")

    def recover(self) -> int:
        """Blocking: move the journal files no live process holds into the spool directory; returns how many."""
        return recover_journal(self.spool_dir)

    def append(self, records: Sequence[Record]) -> asyncio.Future[Segment | None]:
        """Journal one group; the future resolves once it is fsync'd: to its file, or None when it could not be
        journaled (logged and counted: the rows are then only in memory). Never raises."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[Segment | None] = loop.create_future()
        # Encoded here (orjson: microseconds): the journal's thread then only writes and fsyncs, releasing the GIL,
        # where encoding there would make the gateway's loop wait for the GIL at every window.
        try:
            frame: bytes | None = encode_frame(records)
        except (TypeError, ValueError):
            frame = None  # PostgreSQL will reject it too: queued unjournaled, and rejected by the committer
        self._pending.append((frame, len(records), written))
        if self._writing is None:
            self._write_pending(loop)
        return written

    def release(self, segment: Segment) -> None:
        """One group of `segment` is safe (committed, or spooled): a file no longer appended to is deleted once
        all its groups are."""
        left = self._outstanding.get(segment, 0) - 1
        self._outstanding[segment] = left
        if left <= 0 and segment is not self._current:
            self._discard(segment)

    async def close(self) -> None:
        """Wait for the appends under way; delete the files whose groups are all safe and let go of the rest
        (a later start replays them)."""
        while self._writing is not None or self._pending:
            await asyncio.sleep(0.001)  # the last append's callback runs on this loop
        executor, self._executor = self._executor, None
        if executor is None:
            return
        done = [s for s in self._files.segments if self._outstanding.get(s, 0) <= 0]
        await asyncio.get_running_loop().run_in_executor(executor, self._close_files, done)
        executor.shutdown(wait=True)

    def _close_files(self, done: list[Segment]) -> None:
        for segment in done:
            self._files.discard(segment)
        self._files.close()

    def _write_pending(self, loop: asyncio.AbstractEventLoop) -> None:
        batch, self._pending = self._pending, []
        if self._executor is None:
            self.open()
        frames = [frame for frame, _, _ in batch if frame is not None]
        writing = loop.run_in_executor(self._executor, self._write, frames)
        self._writing = writing
        writing.add_done_callback(functools.partial(self._written, batch, loop))

    def _write(self, frames: list[bytes]) -> _Written:
        """On the journal's thread: one write and one fsync for every group of the window."""
        stored, reason = self._files.append(frames)
        return _Written(self._files.current, stored, reason)

    def _written(self, batch: list[_Pending], loop: asyncio.AbstractEventLoop, done: asyncio.Future[_Written]) -> None:
        self._writing = None
        try:
            result = done.result()
        except (OSError, RuntimeError) as exc:  # append_groups reports disk errors itself: the unexpected rest
            result = _Written(None, 0, str(exc) or type(exc).__name__)
        self.stats.journal_fsyncs += 1
        previous, self._current = self._current, result.segment
        failed = 0
        position = 0  # among the frames written
        for frame, rows, written in batch:
            segment = None
            if frame is not None:
                segment = result.segment if position < result.stored else None
                position += 1
            if segment is None:
                failed += rows
            else:
                self._outstanding[segment] = self._outstanding.get(segment, 0) + 1
                self.stats.journaled_rows += rows
            if not written.done():
                written.set_result(segment)
        self.stats.journal_failed_rows += failed
        # Logged at most once a minute (a disk that stays full fails every group commit, at request rate): the
        # count is lsd_writer_journal_failed_rows_total.
        if failed and time.monotonic() - self._logged_at >= FAILURE_LOG_S:
            log.error(
                "cannot journal %d rows (%s): they are kept in memory only (%d such rows since start; logged at most "
                "once a minute)",
                failed,
                result.reason,
                self.stats.journal_failed_rows,
            )
            self._logged_at = time.monotonic()
        if previous is not None and previous is not self._current and self._outstanding.get(previous, 0) <= 0:
            self._discard(previous)  # sealed by this append, with every group already safe
        if self._pending:
            self._write_pending(loop)

    def _discard(self, segment: Segment) -> None:
        self._outstanding.pop(segment, None)
        if self._executor is not None:
            self._executor.submit(self._files.discard, segment)


def recover_journal(spool_dir: Path) -> int:
    """Blocking: move the journal files in `<spool_dir>/journal` that no live process holds into `spool_dir`, where
    a writer adopts and replays them; returns how many. Whatever the durability mode of the caller: a gateway
    restarted without `durability = "journal"` (or `lsd spool replay`) still replays what a crashed one journaled."""
    directory = spool_dir / JOURNAL_DIR
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX) and not n.startswith("."))
    except (FileNotFoundError, NotADirectoryError):
        return 0
    moved = 0
    for name in names:
        fd = lock_existing(directory / name)
        if fd is None:
            continue  # a live process's (this one's included)
        try:
            spool_dir.mkdir(parents=True, exist_ok=True)
            (directory / name).rename(spool_dir / name)
            fsync_directory(spool_dir)
            fsync_directory(directory)
            moved += 1
        except OSError as exc:
            log.error("cannot move journal file %s to %s: %s", name, spool_dir, exc.strerror)
        finally:
            os.close(fd)  # the spool's adoption locks it next
    return moved
