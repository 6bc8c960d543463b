"""The observability writer: one per process; queues records, writes them in batches with binary COPY, spools to disk.

Every observability row (inferences, provider attempts, payloads, feedback) goes through `Writer`; docs/durability.md
states what it guarantees. In short:

- `submit()` appends to an in-memory queue (O(1), no I/O); one background task does everything else. The COPY
  itself runs on the committer's own thread and event loop, so a flush never holds the gateway's loop.
- A flush writes whole groups (the rows of one `record()` call) in one transaction on a dedicated connection.
- A failed flush is retried with exponential backoff (up to 5 s), the batch kept in order. A retried batch goes
  through a staging table and `INSERT ... ON CONFLICT DO NOTHING`, so a flush whose COMMIT succeeded but whose reply
  was lost is never written twice; a replayed one goes there when a primary key refuses the direct path.
- When the queue passes `max_queue_rows` or `max_queue_bytes`, its oldest rows move to the spool (lsd.store.spool,
  fsync'd files); the spool is replayed, oldest first and before the queue, as soon as the database answers; at
  `open()` the writer adopts the files a dead process left. Only when the spool is full too are rows dropped, and
  counted.
- Spool files name the database they were written for (once the writer has reached it); a file of another database
  is never replayed but moved to `<spool_dir>/foreign/` and logged. Files an older LSD wrote (fewer columns, or the
  version 1 format) are replayed, the columns they lack taking their defaults.
- Groups PostgreSQL rejects as data (a NUL byte in text, a missing partition) are isolated by bisection, so one bad
  row never blocks the others; they are counted in `rejected_rows` and kept in `<spool_dir>/rejected/`.
- `close()` flushes for at most `shutdown_flush_timeout_s`, then spools what is left.

This module holds the queue and the task: when to flush, what to spill to the spool and when to replay it.
Committing one batch (the connection, the retry backoff, bisecting and keeping rejected groups) is
lsd.store.committer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections import deque
from collections.abc import Sequence

from lsd.config.model import ObservabilityConfig
from lsd.errors import DatabaseUnavailable
from lsd.records import Record
from lsd.store import bulk
from lsd.store.committer import Committer, Entry, WriterStats, count_by_table
from lsd.store.footprint import footprint
from lsd.store.input_strings import InputStrings
from lsd.store.journal import Journal, recover_journal
from lsd.store.spool import Chunk, DatabaseIdentity, Segment, Spool
from lsd.telemetry.metrics import Metrics

__all__ = ["Writer", "WriterStats"]  # WriterStats lives in lsd.store.committer, which updates it too

log = logging.getLogger("lsd.writer")

SPILL_CHUNK_ROWS = 4096  # rows per spool append (one fsync each)
SPILL_CHUNK_BYTES = 32 * 1024 * 1024  # and about this much memory at most (agent-sized prompts: ~300 inferences)
# The queue's memory is estimated (lsd.store.footprint, ~5 us a group) only once it holds this many rows: a writer
# that keeps up never pays for it. Crossing it, the writer task measures the entries queued before. From there one
# group in SAMPLE_EVERY is measured and the others are taken at the last measured size per row (~0.6 us a request
# on average: a backlog is when a request can least afford 5 us more).
MEASURE_FROM_ROWS = 1000
SAMPLE_EVERY = 8
REPLAY_MIN_ROWS = 1000  # rows per replay transaction, at least
ORPHAN_SCAN_INTERVAL_S = 60.0  # look for files of processes that died meanwhile
CLOSE_GRACE_S = 5.0  # close() waits this long past the flush deadline for the spool to be written


def _footprint(entry: Entry) -> int:
    """The memory an entry holds: its records and their encoded rows."""
    return footprint(entry.records) + (sum(map(len, entry.encoded)) if entry.encoded is not None else 0)


def _measured(entries: Sequence[Entry]) -> int:
    return sum(entry.size for entry in entries if entry.size > 0)


class Writer:
    """Batched, asynchronous writer. No I/O until `open()`; `close()` flushes or spools everything first."""

    def __init__(
        self,
        url: str,
        config: ObservabilityConfig,
        *,
        metrics: Metrics | None = None,
        prepare_threshold: int | None = 5,
    ) -> None:
        self.url = url
        self._metrics = metrics  # telemetry: counters recorded where the stats change
        self.config = config
        self.enabled = config.enabled
        self.stats = WriterStats()
        batch = config.batch_writes
        self._interval = batch.flush_interval_ms / 1000 if batch.enabled else 0.0
        self._max_rows = batch.max_rows if batch.enabled else 1
        self._copying = False  # the last flush was a COPY (Committer.copied)
        self._max_queue = config.max_queue_rows
        self._max_queue_bytes = config.max_queue_bytes
        self._unmeasured = False  # some queued entries have no size yet (queued while the queue was short)
        self._bytes_per_row = 0.0  # of the last group measured
        self._until_sample = 0  # groups to estimate before the next one is measured
        self._spool = Spool(config.spool_dir, config.spool_max_bytes)
        # durability = "journal": every group is fsync'd to <spool_dir>/journal before it is queued.
        journaled = config.durability == "journal"
        self._journal = Journal(config.spool_dir, config.spool_max_bytes, self.stats) if journaled else None
        # The connection, the backoff, and the rows PostgreSQL rejects.
        self._committer = Committer(url, config, self.stats, metrics=metrics, prepare_threshold=prepare_threshold)
        self._queue: deque[Entry] = deque()
        self._first_queued_at = 0.0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._replay: Chunk | None = None  # spool rows read but not committed yet
        self._closing = False
        self._closed = False
        self._deadline = math.inf
        # An input's long strings are stored once a day (0020_input_strings.sql, lsd.store.input_strings).
        self._strings = InputStrings() if config.input_strings_once else None

    @property
    def database(self) -> DatabaseIdentity | None:
        """The database the writer last connected to (its system identifier and name); None before it has."""
        return self._committer.identity

    @property
    def unavailable(self) -> bool:
        """The last flush (or replay) failed for want of the database."""
        return self._committer.retrying

    async def open(self) -> None:
        """Start the writer task. Connecting and replaying an old spool happen in it, not here."""
        if not self.enabled or self._task is not None:
            return
        if self._journal is not None:
            self._journal.open()
        self._task = asyncio.create_task(self._run(), name="lsd-writer")

    async def close(self) -> None:
        """Flush for at most `shutdown_flush_timeout_s`, spool (fsync'd) what is left, release the spool.

        Returns within the flush timeout plus the time to write the spool (CLOSE_GRACE_S at most); rows a
        `write()` caller still waits on are spooled too and the caller gets DatabaseUnavailable."""
        task, self._task = self._task, None
        if task is None:  # never opened
            self._closed = True
            self._abandon("the writer was closed without being opened")
            if self._journal is not None:
                await self._journal.close()  # what was journaled meanwhile stays for the next start
            return
        self._closing = True
        self._deadline = time.monotonic() + self.config.shutdown_flush_timeout_s
        self._committer.finish_by(self._deadline)  # no backoff, no attempt past the deadline
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.config.shutdown_flush_timeout_s + CLOSE_GRACE_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._closed = True
            self._abandon("the writer did not stop in time")
            if self._journal is not None:
                await self._journal.close()  # what it still holds is replayed at the next start

    # -- enqueue (the request path: O(1), no I/O) ------------------------------------------------------------

    def submit(self, records: Sequence[Record]) -> None:
        """Queue records without waiting (async_writes = true)."""
        if not self.enabled or not records:
            return
        if self._closed:
            self._drop([records], "the writer is closed")
            return
        if self._strings is not None:
            records = self._strings.dedupe(records)
        if self._journal is not None:
            self._journaled(records)
            return
        self._enqueue(Entry(records))

    async def write(self, records: Sequence[Record]) -> None:
        """Queue records and return once they are committed (async_writes = false).

        While the database is down this waits (the rows stay in memory, never spooled); if the caller is
        cancelled, its rows become ordinary queued rows. Raises DatabaseUnavailable when the writer is closed
        first, and LsdError when PostgreSQL rejects the rows."""
        if not self.enabled or not records:
            return
        if self._closed:
            raise DatabaseUnavailable("the observability writer is closed")
        if self._strings is not None:
            records = self._strings.dedupe(records)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(Entry(records, waiter))
        await waiter

    async def record(self, records: Sequence[Record]) -> None:
        """Queue or write, as `async_writes` says; with durability = "journal" (and async_writes), return once the
        rows are fsync'd to the journal."""
        if not self.config.async_writes:
            await self.write(records)  # committed: the journal would add nothing
        elif self._journal is not None and self.enabled and records and not self._closed:
            if self._strings is not None:
                records = self._strings.dedupe(records)
            await asyncio.shield(self._journaled(records))  # cancelled, the rows are still journaled and queued
        else:
            self.submit(records)

    def _journaled(self, records: Sequence[Record]) -> asyncio.Future[Segment | None]:
        """Journal a group, and queue it once it is fsync'd (a callback: no task, nothing a cancellation stops)."""
        assert self._journal is not None
        written = self._journal.append(records)
        written.add_done_callback(functools.partial(self._queue_journaled, records))
        return written

    def _queue_journaled(self, records: Sequence[Record], written: asyncio.Future[Segment | None]) -> None:
        if self._closed:  # closed meanwhile: the journal keeps the rows, and the next start replays them
            return
        self._enqueue(Entry(records, journal=written.result()))

    def _enqueue(self, entry: Entry) -> None:
        stats = self.stats
        before = stats.queued_rows
        after = before + len(entry.records)
        if after <= self._max_rows and (self._copying or bulk.by_copy(after)) and not self._committer.retrying:
            # Its flush, the next one, will be a direct COPY (this one is long, or the last one was): encode its rows
            # now (Committer.encode). Not in a backlog: the rows may be spilled, and the committer's thread encodes a
            # long batch for less CPU than this loop; nor while flushes fail: the next one takes the idempotent
            # path, which encodes its rows itself.
            entry.encoded = self._committer.encode(entry.records)
        if not self._queue:
            self._first_queued_at = time.monotonic()
        self._queue.append(entry)
        stats.queued_rows = after
        if before >= MEASURE_FROM_ROWS:
            entry.size = self._size(entry)
            stats.queued_bytes += entry.size
        else:
            self._unmeasured = True
        # Wake the task only on a change it must act on: a first row (start the interval), a full batch, overflow,
        # a queue long enough to measure.
        if (
            before == 0
            or before < self._max_rows <= after
            or before <= self._max_queue < after
            or before < MEASURE_FROM_ROWS <= after
            or stats.queued_bytes > self._max_queue_bytes
        ):
            self._wake.set()

    # -- the task ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        task = asyncio.current_task()
        await self._adopt_orphans()
        await self._committer.connect()
        next_scan = time.monotonic() + ORPHAN_SCAN_INTERVAL_S
        while True:
            if task is not None and task.cancelling():
                # psycopg turns a cancellation during a query into OperationalError: do not carry on as if retrying.
                raise asyncio.CancelledError
            try:
                await self._spill_overflow()
                now = time.monotonic()
                if self._finished(now):
                    break
                if now >= next_scan and not self._closing:
                    await self._adopt_orphans()
                    next_scan = now + ORPHAN_SCAN_INTERVAL_S
                if now >= self._committer.retry_at and self._due(now):
                    await self._flush_next()
                    continue
                retry_at = self._committer.retry_at
                wake_at = retry_at if retry_at > now else self._due_at()
                await self._sleep_until(min(wake_at, next_scan, self._deadline))
            except Exception:  # the writer's guard: a bug must not end the task and lose the queue
                log.exception("the writer loop failed; continuing in 1 s")
                await asyncio.sleep(1.0)
        await self._stop()

    def _finished(self, now: float) -> bool:
        """Closing: go on until the deadline while rows are in memory; spooled rows are safe already, so their
        replay goes on only while the database answers."""
        if not self._closing:
            return False
        if now >= self._deadline or (not self._queue and self._committer.retrying):
            return True
        return not self._queue and self._replay is None and not self._spool.pending()

    def _due(self, now: float) -> bool:
        if self._replay is not None or self._spool.pending():
            return True
        if not self._queue:
            return False
        return (
            self._closing or self.stats.queued_rows >= self._max_rows or now - self._first_queued_at >= self._interval
        )

    def _due_at(self) -> float:
        return self._first_queued_at + self._interval if self._queue else math.inf

    async def _sleep_until(self, at: float) -> None:
        # No await between the caller's checks and clear(): a set() we clear here was already seen.
        self._wake.clear()
        timeout = None if at == math.inf else max(0.0, at - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _flush_next(self) -> None:
        """One flush: the spool first (oldest rows), else the front of the queue; the committer sets the backoff."""
        if self._replay is None and self._spool.pending():
            # Know the database before replaying a file into it: a file of another database is set aside.
            identity = await self._committer.identify()
            if identity is None:
                return  # unavailable: the committer set the backoff
            self._spool.identity = identity
            if self._journal is not None:
                self._journal.identity = identity
            self._replay = await asyncio.to_thread(self._spool.read_chunk, max(self._max_rows, REPLAY_MIN_ROWS))
            self._spool_stats()
        if self._replay is not None:
            chunk = self._replay
            if not await self._committer.commit([Entry(group) for group in chunk.groups]):
                return
            self.stats.replayed_rows += chunk.rows
            self._replay = None
            await asyncio.to_thread(self._spool.release, chunk)
            self._spool_stats()
            return
        entries: list[Entry] = []
        rows = 0
        for entry in self._queue:
            if rows >= self._max_rows:
                break
            entries.append(entry)
            rows += len(entry.records)
        if not await self._committer.commit(entries):
            return
        self._copying = self._committer.copied
        # Only this task removes from the left, and it did not spill during the commit: these are the same entries.
        for _ in entries:
            self._queue.popleft()
        self.stats.queued_rows -= rows
        self.stats.queued_bytes -= _measured(entries)
        self._release_journal(entries)
        for entry in entries:
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_result(None)
        if self._queue:
            self._first_queued_at = time.monotonic()

    # -- the spool -----------------------------------------------------------------------------------------

    async def _adopt_orphans(self) -> None:
        # A dead process's journal becomes spool files, replayed (idempotently) like any other: whatever this
        # writer's own durability mode (a gateway restarted without the journal must not leave it unreplayed).
        moved = await asyncio.to_thread(recover_journal, self._spool.directory)
        if moved:
            log.info("replaying %d journal files left by an earlier process", moved)
        try:
            adopted = await asyncio.to_thread(self._spool.adopt_orphans)
        except OSError as exc:
            log.error("cannot read spool directory %s: %s", self._spool.directory, exc.strerror)
            return
        if adopted:
            log.info("replaying %d spool files left by an earlier process in %s", adopted, self._spool.directory)
            self._spool_stats()

    async def _spill_overflow(self) -> None:
        """Past max_queue_rows or max_queue_bytes, move the oldest rows (not those a caller waits on) to the spool,
        down to half of each."""
        stats = self.stats
        if self._unmeasured and stats.queued_rows >= MEASURE_FROM_ROWS:
            self._measure()
        if stats.queued_rows <= self._max_queue and stats.queued_bytes <= self._max_queue_bytes:
            return
        low_rows, low_bytes = self._max_queue // 2, self._max_queue_bytes // 2
        while stats.queued_rows > low_rows or stats.queued_bytes > low_bytes:
            entries: list[Entry] = []
            held: list[Entry] = []
            rows = size = 0
            excess_rows, excess_bytes = stats.queued_rows - low_rows, stats.queued_bytes - low_bytes
            while (
                self._queue
                and rows < SPILL_CHUNK_ROWS
                and size < SPILL_CHUNK_BYTES
                and (rows < excess_rows or size < excess_bytes)
            ):
                entry = self._queue.popleft()
                if entry.held:
                    held.append(entry)
                else:
                    entries.append(entry)
                    rows += len(entry.records)
                    size += max(entry.size, 0)
            self._queue.extendleft(reversed(held))
            if not entries:
                return
            stats.queued_rows -= rows
            stats.queued_bytes -= size
            await self._spill(entries)

    def _size(self, entry: Entry) -> int:
        """The memory `entry` holds: measured for one group in SAMPLE_EVERY, estimated from it for the others."""
        if self._until_sample > 0:
            self._until_sample -= 1
            return int(self._bytes_per_row * len(entry.records))
        size = _footprint(entry)
        self._bytes_per_row = size / len(entry.records)
        self._until_sample = SAMPLE_EVERY - 1
        return size

    def _measure(self) -> None:
        """Size the entries queued while the queue was short (the queue is long now: its memory counts)."""
        added = 0
        for entry in self._queue:
            if entry.size < 0:
                entry.size = _footprint(entry)
                added += entry.size
        self.stats.queued_bytes += added
        self._unmeasured = False

    async def _spill(self, entries: list[Entry]) -> int:
        """Move `entries` to the spool; returns the rows stored (the others are rejected or dropped, and counted)."""
        if self._committer.identity is not None:
            self._spool.identity = self._committer.identity  # the files name the database last reached
        stored, unencodable, reason = await asyncio.to_thread(self._spool.append_groups, [e.records for e in entries])
        spooled = count_by_table(entries[i].records for i in stored)
        for table, count in spooled.items():
            self.stats.spooled_rows[table] += count
        if self._metrics is not None:  # telemetry
            self._metrics.observe_spooled(spooled, self._spool.size_bytes)
        for i in unencodable:
            self._committer.reject(entries[i], TypeError("a value cannot be encoded as JSON"))
        done = {*stored, *unencodable}
        lost = [entry.records for i, entry in enumerate(entries) if i not in done]
        if lost:
            self._drop(lost, reason or "the spool write failed")
        self._release_journal(entries)  # spooled (fsync'd), rejected or dropped and counted: not to replay again
        self._spool_stats()
        return sum(spooled.values())

    def _release_journal(self, entries: Sequence[Entry]) -> None:
        if self._journal is not None:
            for entry in entries:
                if entry.journal is not None:
                    self._journal.release(entry.journal)
                    entry.journal = None

    def _drop(self, groups: Sequence[Sequence[Record]], reason: str) -> None:
        tables = count_by_table(groups)
        for table, count in tables.items():
            self.stats.dropped_rows[table] += count
        if self._metrics is not None:  # telemetry
            self._metrics.observe_dropped(tables)
        log.error("dropped %d observability rows %s: %s", sum(tables.values()), tables, reason)

    def _abandon(self, reason: str) -> None:
        """Count what is still in memory as dropped and fail its waiters: nothing will write it any more."""
        if self._queue:
            self._drop([entry.records for entry in self._queue], reason)
        for entry in self._queue:
            if entry.held and entry.waiter is not None:
                entry.waiter.set_exception(DatabaseUnavailable(reason))
        self._queue.clear()
        self.stats.queued_rows = 0
        self.stats.queued_bytes = 0

    def _spool_stats(self) -> None:
        self.stats.spool_bytes = self._spool.size_bytes
        self.stats.spool_files = self._spool.files
        self.stats.spool_torn_frames = self._spool.torn_frames
        self.stats.spool_foreign_files = self._spool.foreign_files

    async def _stop(self) -> None:
        """The deadline passed or all is written: spool what is left, close the connection, release the spool."""
        self._closed = True  # from here on submit() drops (and counts) and write() raises
        entries = list(self._queue)
        self._queue.clear()
        self.stats.queued_rows = 0
        self.stats.queued_bytes = 0
        if entries:
            spooled = await self._spill(entries)
            log.warning(
                "shutdown: %d rows not written to PostgreSQL in time were spooled to %s; the next start replays them",
                spooled,
                self._spool.directory,
            )
        for entry in entries:
            if entry.held and entry.waiter is not None:
                entry.waiter.set_exception(DatabaseUnavailable("the rows were not committed before shutdown"))
        await self._committer.close()
        await asyncio.to_thread(self._spool.close)
        if self._journal is not None:
            await self._journal.close()
        self._replay = None
        self._spool_stats()
