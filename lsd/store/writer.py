"""The observability writer: one per process; queues records, writes them in batches with binary COPY, spools to disk.

Every observability row (inferences, provider attempts, payloads, feedback) goes through `Writer`; docs/durability.md
states what it guarantees. In short:

- `submit()` appends to an in-memory queue (O(1), no I/O); one background task does everything else.
- A flush writes whole groups (the rows of one `record()` call) in one transaction on a dedicated connection.
- A failed flush is retried with exponential backoff (up to 5 s), the batch kept in order. A retried batch, and every
  replayed one, goes through a staging table and `INSERT ... ON CONFLICT DO NOTHING`, so a flush whose COMMIT
  succeeded but whose reply was lost is never written twice.
- When the queue passes `max_queue_rows`, its oldest rows move to the spool (lsd.store.spool, fsync'd files); the
  spool is replayed, oldest first and before the queue, as soon as the database answers; at `open()` the writer
  adopts the files a dead process left. Only when the spool is full too are rows dropped, and counted.
- Groups PostgreSQL rejects as data (a NUL byte in text, a missing partition) are isolated by bisection, so one bad
  row never blocks the others; they are counted in `rejected_rows` and kept in `<spool_dir>/rejected/`.
- `close()` flushes for at most `shutdown_flush_timeout_s`, then spools what is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps

from lsd.config.model import ObservabilityConfig
from lsd.errors import DatabaseUnavailable, LsdError
from lsd.records import Record
from lsd.store.bulk import BulkInserter
from lsd.store.database import scrub
from lsd.store.spool import Chunk, Spool, encode_frame
from lsd.telemetry.metrics import Metrics

log = logging.getLogger("lsd.writer")

FIRST_RETRY_DELAY_S = 0.05
MAX_RETRY_DELAY_S = 5.0
CONNECT_TIMEOUT_S = 5
ATTEMPT_TIMEOUT_S = 30.0  # one flush (connect, COPY, COMMIT) gives up after this and counts as failed
SPILL_CHUNK_ROWS = 4096  # rows per spool append (one fsync each)
REPLAY_MIN_ROWS = 1000  # rows per replay transaction, at least
ORPHAN_SCAN_INTERVAL_S = 60.0  # look for files of processes that died meanwhile
REJECTED_DIR = "rejected"  # under spool_dir: groups PostgreSQL refused, in spool format, for an operator to inspect
CLOSE_GRACE_S = 5.0  # close() waits this long past the flush deadline for the spool to be written
_REJECTED = (psycopg.DataError, psycopg.IntegrityError, TypeError, ValueError)


def _per_table() -> defaultdict[str, int]:
    return defaultdict(int)


@dataclass
class WriterStats:
    """The writer's counters, plain attributes for telemetry. Row counts are cumulative except queued_rows."""

    queued_rows: int = 0  # rows in memory now
    written_rows: dict[str, int] = field(default_factory=_per_table)  # inserted, per table (replays included)
    spooled_rows: dict[str, int] = field(default_factory=_per_table)  # moved from memory to the spool, per table
    replayed_rows: int = 0  # rows read back from the spool and committed (duplicates skipped included)
    dropped_rows: dict[str, int] = field(default_factory=_per_table)  # lost: spool full or unwritable, per table
    rejected_rows: dict[str, int] = field(default_factory=_per_table)  # refused by PostgreSQL as data, per table
    spool_bytes: int = 0  # bytes in the spool files this process holds
    spool_files: int = 0
    spool_torn_frames: int = 0  # frames skipped on replay: cut short by a crash, or corrupt
    flushes: int = 0
    flush_failures: int = 0
    last_flush_seconds: float = 0.0


@dataclass(slots=True)
class _Entry:
    """One group of rows, committed together; `waiter` is set while a `write()` caller waits for the commit."""

    records: Sequence[Record]
    waiter: asyncio.Future[None] | None = None

    @property
    def held(self) -> bool:
        """A caller waits on these rows: they stay in memory (never spooled) until committed."""
        return self.waiter is not None and not self.waiter.done()


class _Unavailable(Exception):
    """The flush failed for a reason that retrying later may fix (connection, timeout, server state)."""


class _Rejected(Exception):
    """PostgreSQL (or the encoder) refused the rows themselves: retrying the same rows cannot help."""


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
        self._prepare_threshold = prepare_threshold  # None behind a PgBouncer that cannot route prepared statements
        self.config = config
        self.enabled = config.enabled
        self.stats = WriterStats()
        batch = config.batch_writes
        self._interval = batch.flush_interval_ms / 1000 if batch.enabled else 0.0
        self._max_rows = batch.max_rows if batch.enabled else 1
        self._max_queue = config.max_queue_rows
        self._spool = Spool(config.spool_dir, config.spool_max_bytes)
        self._rejects = Spool(config.spool_dir / REJECTED_DIR, config.spool_max_bytes)  # kept, never replayed
        self._queue: deque[_Entry] = deque()
        self._first_queued_at = 0.0
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._bulk = BulkInserter()
        self._task: asyncio.Task[None] | None = None
        self._replay: Chunk | None = None  # spool rows read but not committed yet
        self._retrying = False  # the last flush failed: the next one takes the idempotent path
        self._retry_at = 0.0
        self._delay = FIRST_RETRY_DELAY_S
        self._closing = False
        self._closed = False
        self._deadline = math.inf
        self._attempt_timeout: asyncio.Timeout | None = None  # of the flush under way

    async def open(self) -> None:
        """Start the writer task. Connecting and replaying an old spool happen in it, not here."""
        if not self.enabled or self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="lsd-writer")

    async def close(self) -> None:
        """Flush for at most `shutdown_flush_timeout_s`, spool (fsync'd) what is left, release the spool.

        Returns within the flush timeout plus the time to write the spool (CLOSE_GRACE_S at most); rows a
        `write()` caller still waits on are spooled too and the caller gets DatabaseUnavailable."""
        task, self._task = self._task, None
        if task is None:  # never opened
            self._closed = True
            self._abandon("the writer was closed without being opened")
            return
        self._closing = True
        self._deadline = time.monotonic() + self.config.shutdown_flush_timeout_s
        self._retry_at = 0.0
        self._wake.set()
        attempt = self._attempt_timeout
        if attempt is not None and not attempt.expired():
            # A flush under way (a connect to a host that does not answer, say) must not outlast the deadline.
            at = asyncio.get_running_loop().time() + self.config.shutdown_flush_timeout_s
            attempt.reschedule(min(attempt.when() or at, at))
        try:
            await asyncio.wait_for(asyncio.shield(task), self.config.shutdown_flush_timeout_s + CLOSE_GRACE_S)
        except TimeoutError:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._closed = True
            self._abandon("the writer did not stop in time")

    # -- enqueue (the request path: O(1), no I/O) ------------------------------------------------------------

    def submit(self, records: Sequence[Record]) -> None:
        """Queue records without waiting (async_writes = true)."""
        if not self.enabled or not records:
            return
        if self._closed:
            self._drop([records], "the writer is closed")
            return
        self._enqueue(_Entry(records))

    async def write(self, records: Sequence[Record]) -> None:
        """Queue records and return once they are committed (async_writes = false).

        While the database is down this waits (the rows stay in memory, never spooled); if the caller is
        cancelled, its rows become ordinary queued rows. Raises DatabaseUnavailable when the writer is closed
        first, and LsdError when PostgreSQL rejects the rows."""
        if not self.enabled or not records:
            return
        if self._closed:
            raise DatabaseUnavailable("the observability writer is closed")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Entry(records, waiter))
        await waiter

    async def record(self, records: Sequence[Record]) -> None:
        """Queue or write, as `async_writes` says."""
        if self.config.async_writes:
            self.submit(records)
        else:
            await self.write(records)

    def _enqueue(self, entry: _Entry) -> None:
        before = self.stats.queued_rows
        after = before + len(entry.records)
        if not self._queue:
            self._first_queued_at = time.monotonic()
        self._queue.append(entry)
        self.stats.queued_rows = after
        # Wake the task only on a change it must act on: a first row (start the interval), a full batch, overflow.
        if before == 0 or before < self._max_rows <= after or before <= self._max_queue < after:
            self._wake.set()

    # -- the task ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        task = asyncio.current_task()
        await self._adopt_orphans()
        await self._warm_up()
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
                if now >= self._retry_at and self._due(now):
                    await self._flush_next()
                    continue
                wake_at = self._retry_at if self._retry_at > now else self._due_at()
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
        if now >= self._deadline or (not self._queue and self._retrying):
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
        """One transaction: the spool first (oldest rows), else the front of the queue. Sets the backoff."""
        if self._replay is None and self._spool.pending():
            self._replay = await asyncio.to_thread(self._spool.read_chunk, max(self._max_rows, REPLAY_MIN_ROWS))
            self._spool_stats()
        if self._replay is not None:
            chunk = self._replay
            if not await self._commit([_Entry(group) for group in chunk.groups], idempotent=True):
                self._failed()
                return
            self.stats.replayed_rows += chunk.rows
            self._replay = None
            await asyncio.to_thread(self._spool.release, chunk)
            self._spool_stats()
            self._succeeded()
            return
        entries: list[_Entry] = []
        rows = 0
        for entry in self._queue:
            if rows >= self._max_rows:
                break
            entries.append(entry)
            rows += len(entry.records)
        if not await self._commit(entries, idempotent=self._retrying):
            self._failed()
            return
        # Only this task removes from the left, and it did not spill during the commit: these are the same entries.
        for _ in entries:
            self._queue.popleft()
        self.stats.queued_rows -= rows
        for entry in entries:
            if entry.waiter is not None and not entry.waiter.done():
                entry.waiter.set_result(None)
        if self._queue:
            self._first_queued_at = time.monotonic()
        self._succeeded()

    def _failed(self) -> None:
        if not self._retrying:
            log.warning(
                "cannot write to PostgreSQL; retrying with backoff, spooling to %s if the queue fills",
                self._spool.directory,
            )
        self._retrying = True
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, MAX_RETRY_DELAY_S)

    def _succeeded(self) -> None:
        if self._retrying:
            log.info("writing to PostgreSQL again")
        self._retrying = False
        self._retry_at = 0.0
        self._delay = FIRST_RETRY_DELAY_S

    # -- committing ----------------------------------------------------------------------------------------

    async def _commit(self, entries: list[_Entry], *, idempotent: bool) -> bool:
        """Commit `entries` in one transaction; False when the database is unavailable (retry later).

        When PostgreSQL rejects the rows themselves, bisect: every group that commits alone is written, and each
        group rejected alone is counted in rejected_rows and dropped."""
        if not entries:
            return True
        try:
            await self._attempt([r for entry in entries for r in entry.records], idempotent=idempotent)
        except _Unavailable:
            return False
        except _Rejected as exc:
            if not idempotent:  # perhaps only rows already present (a primary key conflict): skip those
                return await self._commit(entries, idempotent=True)
            if len(entries) == 1:
                self._reject(entries[0], exc.__cause__ or exc)
                await self._keep_rejected(entries[0])
                return True
            middle = len(entries) // 2
            return await self._commit(entries[:middle], idempotent=True) and await self._commit(
                entries[middle:], idempotent=True
            )
        return True

    async def _attempt(self, records: list[Record], *, idempotent: bool) -> None:
        started = time.perf_counter()
        limit_s = ATTEMPT_TIMEOUT_S
        if self._closing:
            limit_s = max(0.01, min(limit_s, self._deadline - time.monotonic()))
        try:
            inserted = await self._insert(records, idempotent=idempotent, limit_s=limit_s)
        except _REJECTED as exc:
            self.stats.flush_failures += 1
            if self._metrics is not None:  # telemetry
                self._metrics.observe_flush_failure()
            if self._conn is not None and self._conn.closed:
                self._conn = None
            raise _Rejected from exc
        except (psycopg.Error, OSError, TimeoutError) as exc:  # TimeoutError is an OSError; named for the reader
            self.stats.flush_failures += 1
            if self._metrics is not None:  # telemetry
                self._metrics.observe_flush_failure()
            log.debug("flush of %d rows failed: %s", len(records), scrub(str(exc) or type(exc).__name__, self.url))
            await self._disconnect()
            raise _Unavailable from exc
        for table, count in inserted.items():
            self.stats.written_rows[table] += count
        self.stats.flushes += 1
        self.stats.last_flush_seconds = time.perf_counter() - started
        if self._metrics is not None:  # telemetry
            self._metrics.observe_flush(inserted, self.stats.last_flush_seconds, self.stats.queued_rows)

    async def _insert(self, records: list[Record], *, idempotent: bool, limit_s: float) -> dict[str, int]:
        try:
            async with asyncio.timeout(limit_s) as self._attempt_timeout:
                if self._conn is None:
                    self._conn = await self._connect()
                return await self._bulk.insert(self._conn, records, idempotent=idempotent)
        finally:
            self._attempt_timeout = None

    def _reject(self, entry: _Entry, exc: BaseException) -> None:
        tables = _count_by_table([entry.records])
        for table, count in tables.items():
            self.stats.rejected_rows[table] += count
        if self._metrics is not None:  # telemetry
            self._metrics.observe_rejected(tables)
        sqlstate = getattr(exc, "sqlstate", None) or "none"
        # Never the rows nor the server's message (it may quote them): the tables, counts and SQLSTATE only.
        log.error("PostgreSQL rejected rows %s (SQLSTATE %s, %s)", tables, sqlstate, type(exc).__name__)
        if entry.waiter is not None and not entry.waiter.done():
            entry.waiter.set_exception(LsdError(f"PostgreSQL rejected the rows (SQLSTATE {sqlstate})"))

    async def _keep_rejected(self, entry: _Entry) -> None:
        try:
            frame = encode_frame(entry.records)
        except (TypeError, ValueError):
            return  # not even JSON: nothing can keep it
        stored, reason = await asyncio.to_thread(self._rejects.append, [frame])
        if stored:
            log.error("the rejected rows are kept in %s", self._rejects.directory)
        else:
            log.error("the rejected rows are dropped: %s", reason)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="lsd-writer",
            prepare_threshold=self._prepare_threshold,
        )
        set_json_dumps(orjson.dumps, context=conn)  # as the spool encodes JSON: a replay inserts the same bytes
        return conn

    async def _warm_up(self) -> None:
        """Connect before the first flush, so that a flush at shutdown does not wait for a connection."""
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S) as self._attempt_timeout:
                self._conn = await self._connect()
        except (psycopg.Error, OSError, TimeoutError):
            await self._disconnect()  # the first flush reports it, and retries
        finally:
            self._attempt_timeout = None

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with contextlib.suppress(psycopg.Error, OSError):
                await conn.close()

    # -- the spool -----------------------------------------------------------------------------------------

    async def _adopt_orphans(self) -> None:
        try:
            adopted = await asyncio.to_thread(self._spool.adopt_orphans)
        except OSError as exc:
            log.error("cannot read spool directory %s: %s", self._spool.directory, exc.strerror)
            return
        if adopted:
            log.info("replaying %d spool files left by an earlier process in %s", adopted, self._spool.directory)
            self._spool_stats()

    async def _spill_overflow(self) -> None:
        """Past max_queue_rows, move the oldest rows (not those a caller waits on) to the spool, down to half."""
        if self.stats.queued_rows <= self._max_queue:
            return
        low = self._max_queue // 2
        while self.stats.queued_rows > low:
            entries: list[_Entry] = []
            held: list[_Entry] = []
            rows = 0
            while self._queue and rows < min(SPILL_CHUNK_ROWS, self.stats.queued_rows - low):
                entry = self._queue.popleft()
                if entry.held:
                    held.append(entry)
                else:
                    entries.append(entry)
                    rows += len(entry.records)
            self._queue.extendleft(reversed(held))
            if not entries:
                return
            self.stats.queued_rows -= rows
            await self._spill(entries)

    async def _spill(self, entries: list[_Entry]) -> int:
        """Move `entries` to the spool; returns the rows stored (the others are rejected or dropped, and counted)."""
        stored, unencodable, reason = await asyncio.to_thread(self._spool.append_groups, [e.records for e in entries])
        spooled = _count_by_table(entries[i].records for i in stored)
        for table, count in spooled.items():
            self.stats.spooled_rows[table] += count
        if self._metrics is not None:  # telemetry
            self._metrics.observe_spooled(spooled, self._spool.size_bytes)
        for i in unencodable:
            self._reject(entries[i], TypeError("a value cannot be encoded as JSON"))
        done = {*stored, *unencodable}
        lost = [entry.records for i, entry in enumerate(entries) if i not in done]
        if lost:
            self._drop(lost, reason or "the spool write failed")
        self._spool_stats()
        return sum(spooled.values())

    def _drop(self, groups: Sequence[Sequence[Record]], reason: str) -> None:
        tables = _count_by_table(groups)
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

    def _spool_stats(self) -> None:
        self.stats.spool_bytes = self._spool.size_bytes
        self.stats.spool_files = self._spool.files
        self.stats.spool_torn_frames = self._spool.torn_frames

    async def _stop(self) -> None:
        """The deadline passed or all is written: spool what is left, close the connection, release the spool."""
        self._closed = True  # from here on submit() drops (and counts) and write() raises
        entries = list(self._queue)
        self._queue.clear()
        self.stats.queued_rows = 0
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
        await self._disconnect()
        await asyncio.to_thread(self._spool.close)
        await asyncio.to_thread(self._rejects.close)
        self._replay = None
        self._spool_stats()


def _count_by_table(groups: Iterable[Sequence[Record]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for group in groups:
        for record in group:
            counts[record.TABLE] += 1
    return dict(counts)
