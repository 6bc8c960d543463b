"""The writer's connection to PostgreSQL: commits groups of rows, isolates rejected ones, paces retries.

`Committer.commit()` writes a batch of groups (lsd.store.writer's queue entries, or a replayed spool chunk) in one
transaction with lsd.store.bulk, and tells the two ways a flush fails apart:

- unavailable (connection, timeout, server state): nothing is written, `commit()` returns False and the next try
  waits out an exponential backoff (`retry_at`, up to 5 s); a retried batch takes the idempotent path, as a flush
  whose COMMIT succeeded but whose reply was lost must not be written twice.
- rejected as data (a NUL byte in text, a missing partition, a value over PostgreSQL's limits): the batch is
  bisected, every group that commits alone is written, and each group refused alone is counted in `rejected_rows`,
  its waiter failed, and its rows kept in `<spool_dir>/rejected/` for an operator (never replayed).

On each connection it reads which database it reached (`identity`: PostgreSQL's system identifier and the database
name), which the spool files it writes name, and against which the writer checks a spool file before replaying it.

The counters it updates live in the writer's `WriterStats`, defined here so both modules share one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import uvloop

from lsd.config.model import ObservabilityConfig
from lsd.errors import LsdError
from lsd.records import InputStringRecord, Record
from lsd.store.bulk import BulkInserter, configure
from lsd.store.database import scrub
from lsd.store.spool import REJECTED_DIR, DatabaseIdentity, Segment, Spool, encode_frame
from lsd.telemetry.metrics import Metrics

log = logging.getLogger("lsd.writer")

FIRST_RETRY_DELAY_S = 0.05
MAX_RETRY_DELAY_S = 5.0
CONNECT_TIMEOUT_S = 5
ATTEMPT_TIMEOUT_S = 30.0  # one flush (connect, COPY, COMMIT) gives up after this and counts as failed
# Errors about the rows themselves, not the server's state: the batch is bisected and the refused group kept apart.
# A value over PostgreSQL's own limits (54000, `program_limit_exceeded`; 53200, `out_of_memory`, which a COPY of a
# value near 1 GB raises: "Cannot enlarge string buffer") would otherwise be retried for ever, with every row
# queued behind it.
_REJECTED = (
    psycopg.DataError,
    psycopg.IntegrityError,
    psycopg.errors.ProgramLimitExceeded,
    psycopg.errors.OutOfMemory,
    TypeError,
    ValueError,
)
THREAD_NAME = "lsd-writer-copy"

T = TypeVar("T")


def _per_table() -> defaultdict[str, int]:
    return defaultdict(int)


@dataclass
class WriterStats:
    """The writer's counters, plain attributes for telemetry. Row counts are cumulative except queued_rows and
    queued_bytes."""

    queued_rows: int = 0  # rows in memory now
    queued_bytes: int = 0  # about how much memory they hold (lsd.store.footprint), once the queue is long
    written_rows: dict[str, int] = field(default_factory=_per_table)  # inserted, per table (replays included)
    spooled_rows: dict[str, int] = field(default_factory=_per_table)  # moved from memory to the spool, per table
    replayed_rows: int = 0  # rows read back from the spool and committed (duplicates skipped included)
    dropped_rows: dict[str, int] = field(default_factory=_per_table)  # lost: spool full or unwritable, per table
    rejected_rows: dict[str, int] = field(default_factory=_per_table)  # refused by PostgreSQL as data, per table
    spool_bytes: int = 0  # bytes in the spool files this process holds
    spool_files: int = 0
    spool_torn_frames: int = 0  # frames skipped on replay: cut short by a crash, or corrupt
    spool_foreign_files: int = 0  # spool files of another database: set aside in <spool_dir>/foreign, not replayed
    flushes: int = 0
    flush_failures: int = 0
    last_flush_seconds: float = 0.0
    journaled_rows: int = 0  # durability = "journal": rows fsync'd to the journal before their response
    journal_fsyncs: int = 0  # its group commits (one write and one fsync each)
    journal_failed_rows: int = 0  # rows that could not be journaled (disk full, spool_max_bytes): queued only


@dataclass(slots=True)
class Entry:
    """One group of rows, committed together; `waiter` is set while a `write()` caller waits for the commit."""

    records: Sequence[Record]
    waiter: asyncio.Future[None] | None = None
    journal: Segment | None = None  # the journal file holding these rows until they are safe (durability = journal)
    size: int = -1  # lsd.store.footprint's estimate of the memory the rows hold; -1 until measured
    # The rows as binary COPY writes them, encoded as the group was queued (Committer.encode); None if not.
    encoded: list[bytes] | None = None

    @property
    def held(self) -> bool:
        """A caller waits on these rows: they stay in memory (never spooled) until committed."""
        return self.waiter is not None and not self.waiter.done()


def _encoded(entries: list[Entry]) -> list[bytes | None] | None:
    """The entries' rows as encoded when queued, in order, None for the rows of an entry that was not; None when
    no entry was."""
    if all(entry.encoded is None for entry in entries):
        return None
    rows: list[bytes | None] = []
    for entry in entries:
        rows += entry.encoded if entry.encoded is not None else [None] * len(entry.records)
    return rows


def count_by_table(groups: Iterable[Sequence[Record]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for group in groups:
        for record in group:
            counts[record.TABLE] += 1
    return dict(counts)


class _Unavailable(Exception):
    """The flush failed for a reason that retrying later may fix (connection, timeout, server state)."""


class _Rejected(Exception):
    """PostgreSQL (or the encoder) refused the rows themselves: retrying the same rows cannot help."""


class Committer:
    """One dedicated connection, opened on first use; `close()` closes it. Used by the writer's task only.

    The connection lives on a thread of its own, which runs its own event loop (started on first use, stopped by
    `close()`): connecting, encoding the rows and the COPY and COMMIT run there, never on the gateway's loop, so a
    flush competes with requests only for the GIL (released during the socket I/O), not for the loop. The writer's
    task awaits each step from the gateway's loop; its bookkeeping (counters, waiters, backoff) stays there."""

    def __init__(
        self,
        url: str,
        config: ObservabilityConfig,
        stats: WriterStats,
        *,
        metrics: Metrics | None,
        prepare_threshold: int | None,
    ) -> None:
        self.url = url
        self._stats = stats
        self._metrics = metrics  # telemetry: counters recorded where the stats change
        self._prepare_threshold = prepare_threshold  # None behind a PgBouncer that cannot route prepared statements
        self._spool_dir = config.spool_dir  # named in the log when the database goes away
        self._rejects = Spool(config.spool_dir / REJECTED_DIR, config.spool_max_bytes)  # kept, never replayed
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._identity: DatabaseIdentity | None = None  # of the last connection made
        self._bulk = BulkInserter()
        self._retrying = False  # the last flush failed: the next one takes the idempotent path
        self._retry_at = 0.0
        self._delay = FIRST_RETRY_DELAY_S
        self._deadline = math.inf  # set by finish_by(): no attempt runs past it
        self._attempt_timeout: asyncio.Timeout | None = None  # of the flush under way (on the committer's loop)
        self._loop: asyncio.AbstractEventLoop | None = None  # the committer's own, run by `_thread`
        self._thread: threading.Thread | None = None

    @property
    def copied(self) -> bool:
        """The last direct flush went by COPY (lsd.store.bulk): read on the gateway's loop once the flush is over."""
        return self._bulk.copied

    def encode(self, records: Sequence[Record]) -> list[bytes] | None:
        """On the gateway's loop, as a group is queued for a flush that will be a COPY: its rows as binary COPY
        writes them, so that the flush sends bytes instead of encoding them on the committer's thread; None until
        the committer has read the tables' columns (its first flush) or when a value cannot be encoded (the flush
        then meets, and handles, the same error).

        Why: encoding a batch of ~330 rows (1,000 req/s, 100 ms) the committer's thread held the GIL ~2.7 ms at a
        time, and the requests of those milliseconds waited for it (p99 latency added to a direct call at 1,000
        req/s: +1.8-2.0 ms with it, +1.5 without); here each request pays for its own rows (~5 us a row)."""
        specs = self._bulk.specs
        rows: list[bytes] = []
        for record in records:
            spec = specs.get(type(record))
            if spec is None or spec.encode is None:
                return None
            try:
                rows.append(spec.encode(record))
            except _REJECTED:  # a value no dumper takes: the flush's own COPY raises it and rejects the group
                return None
        return rows

    @property
    def retrying(self) -> bool:
        """The last flush failed for want of the database."""
        return self._retrying

    @property
    def identity(self) -> DatabaseIdentity | None:
        """The database the last connection reached; None before the first."""
        return self._identity

    async def identify(self) -> DatabaseIdentity | None:
        """The database this committer writes to, connecting when not connected; None (and a backoff, as for a
        failed flush) when the database is unavailable."""
        if self._conn is None:
            try:
                await self._there(self._connect_within(CONNECT_TIMEOUT_S))
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.debug("connect failed: %s", scrub(str(exc) or type(exc).__name__, self.url))
                await self._disconnect()
                self._failed()
                return None
        return self._identity

    @property
    def retry_at(self) -> float:
        """time.monotonic() before which the next flush should not be tried (the backoff); 0 when none."""
        return self._retry_at

    async def connect(self) -> None:
        """Connect before the first flush, so that a flush at shutdown does not wait for a connection."""
        try:
            await self._there(self._connect_within(CONNECT_TIMEOUT_S))
        except (psycopg.Error, OSError, TimeoutError):
            await self._disconnect()  # the first flush reports it, and retries

    def finish_by(self, deadline: float) -> None:
        """Shutting down: retry at once, and let no attempt (the one under way included) run past `deadline`."""
        self._deadline = deadline
        self._retry_at = 0.0
        if self._loop is not None and not self._loop.is_closed():
            # A flush under way (a connect to a host that does not answer, say) must not outlast the deadline.
            self._loop.call_soon_threadsafe(self._cut_attempt, deadline)

    def _cut_attempt(self, deadline: float) -> None:
        """On the committer's loop: bring the attempt under way (if any) to end by `deadline`."""
        attempt = self._attempt_timeout
        if attempt is not None and not attempt.expired() and self._loop is not None:
            at = self._loop.time() + max(0.0, deadline - time.monotonic())
            attempt.reschedule(min(attempt.when() or at, at))

    async def commit(self, entries: list[Entry]) -> bool:
        """One flush: commit `entries` in one transaction; False when the database is unavailable (retry later,
        at `retry_at`). Every batch after a failed flush takes the idempotent path; any other, a replayed spool
        chunk included, the direct path first (spilled rows were never sent): if some rows were committed already
        (a replay or a journal cut short by a crash), a primary key refuses the batch and it goes again through the
        idempotent path. (Replays through staging every time: bench bigctx's writer drained 481 rows/s of 100 KiB
        prompts, 1,390 directly.)

        The COPY runs on the committer's thread, straight through: while the gateway's loop shared it with the
        requests (yielding every few rows), a batch took ~0.5 s under a saturating load and the queue held
        0.6-3 s of rows."""
        if not await self._commit(entries, idempotent=self._retrying):
            self._failed()
            return False
        self._succeeded()
        return True

    def reject(self, entry: Entry, exc: BaseException, *, kept: bool = False) -> None:
        """Count `entry` as refused and fail its waiter; logs the tables, counts and SQLSTATE, never the rows.
        `kept`: the rows are in the rejected spool, which `lsd spool retry-rejected` may store later: the waiter's
        error says so, as a caller that sends the same request again would have it stored twice."""
        tables = count_by_table([entry.records])
        for table, count in tables.items():
            self._stats.rejected_rows[table] += count
        sqlstate = getattr(exc, "sqlstate", None) or "none"
        if self._metrics is not None:  # telemetry
            self._metrics.observe_rejected(tables, sqlstate if sqlstate != "none" else "unencodable")
        # Never the rows nor the server's message (it may quote them): the tables, counts and SQLSTATE only.
        log.error("PostgreSQL rejected rows %s (SQLSTATE %s, %s)", tables, sqlstate, type(exc).__name__)
        if entry.waiter is not None and not entry.waiter.done():
            message = f"PostgreSQL rejected the rows (SQLSTATE {sqlstate})"
            if kept:  # the place and the command are the operator's (logged above), not the API client's
                message += (
                    "; the gateway keeps them, and an operator can store them once the cause is fixed: do not send "
                    "this request again, or it may be stored twice"
                )
            entry.waiter.set_exception(LsdError(message))

    async def close(self) -> None:
        """Close the connection, stop the committer's thread and release the rejected rows' spool."""
        await self._disconnect()
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join)
            loop.close()
        await asyncio.to_thread(self._rejects.close)

    async def _there(self, work: Coroutine[Any, Any, T]) -> T:
        """Run `work` on the committer's loop (starting its thread on first use) and wait for it from this one.

        Cancelling the caller cancels `work` (asyncio chains the two futures)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = uvloop.new_event_loop()  # as the gateway's (lsd serve runs on uvloop)
            self._thread = threading.Thread(target=loop.run_forever, name=THREAD_NAME, daemon=True)
            self._thread.start()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))

    def _failed(self) -> None:
        if not self._retrying:
            log.warning(
                "cannot write to PostgreSQL; retrying with backoff, spooling to %s if the queue fills",
                self._spool_dir,
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

    async def _commit(self, entries: list[Entry], *, idempotent: bool) -> bool:
        """Commit `entries` in one transaction; False when the database is unavailable (retry later).

        When PostgreSQL rejects the rows themselves, bisect: every group that commits alone is written, and each
        group rejected alone is counted in rejected_rows and dropped."""
        if not entries:
            return True
        try:
            await self._attempt(
                [r for entry in entries for r in entry.records], _encoded(entries), idempotent=idempotent
            )
        except _Unavailable:
            return False
        except _Rejected as exc:
            if not idempotent:  # perhaps only rows already present (a primary key conflict): skip those
                return await self._commit(entries, idempotent=True)
            if len(entries) == 1:
                await self._commit_strings(entries[0])
                kept = await self._keep_rejected(entries[0])
                self.reject(entries[0], exc.__cause__ or exc, kept=kept)
                return True
            middle = len(entries) // 2
            return await self._commit(entries[:middle], idempotent=True) and await self._commit(
                entries[middle:], idempotent=True
            )
        return True

    async def _commit_strings(self, entry: Entry) -> None:
        """The input strings of a rejected group, committed alone: the writer remembers them as stored for the day,
        and later inferences hold only their keys (lsd.store.input_strings). Valid by construction (no U+0000); a
        failure here leaves the rejected group as it is."""
        strings: list[Record] = [record for record in entry.records if isinstance(record, InputStringRecord)]
        if not strings or len(strings) == len(entry.records):
            return
        try:
            await self._attempt(strings, None, idempotent=True)
        except (_Unavailable, _Rejected):
            log.error("the input strings of the rejected rows could not be stored either")

    async def _attempt(self, records: list[Record], encoded: list[bytes | None] | None, *, idempotent: bool) -> None:
        started = time.perf_counter()
        limit_s = max(0.01, min(ATTEMPT_TIMEOUT_S, self._deadline - time.monotonic()))
        try:
            inserted = await self._insert(records, encoded, idempotent=idempotent, limit_s=limit_s)
        except _REJECTED as exc:
            self._stats.flush_failures += 1
            if self._metrics is not None:  # telemetry
                self._metrics.observe_flush_failure()
            if self._conn is not None and self._conn.closed:
                self._conn = None
            raise _Rejected from exc
        except (psycopg.Error, OSError, TimeoutError) as exc:  # TimeoutError is an OSError; named for the reader
            self._stats.flush_failures += 1
            if self._metrics is not None:  # telemetry
                self._metrics.observe_flush_failure()
            log.debug("flush of %d rows failed: %s", len(records), scrub(str(exc) or type(exc).__name__, self.url))
            await self._disconnect()
            raise _Unavailable from exc
        stats = self._stats
        for table, count in inserted.items():
            stats.written_rows[table] += count
        stats.flushes += 1
        stats.last_flush_seconds = time.perf_counter() - started
        if self._metrics is not None:  # telemetry
            self._metrics.observe_flush(inserted, stats.last_flush_seconds, stats.queued_rows)

    async def _insert(
        self, records: list[Record], encoded: list[bytes | None] | None, *, idempotent: bool, limit_s: float
    ) -> dict[str, int]:
        return await self._there(self._insert_here(records, encoded, idempotent=idempotent, limit_s=limit_s))

    async def _insert_here(
        self, records: list[Record], encoded: list[bytes | None] | None, *, idempotent: bool, limit_s: float
    ) -> dict[str, int]:
        """On the committer's loop: nothing else runs there, so the COPY never yields."""
        try:
            async with asyncio.timeout(limit_s) as self._attempt_timeout:
                if self._conn is None:
                    self._conn = await self._connect()
                return await self._bulk.insert(
                    self._conn, records, idempotent=idempotent, cooperative=False, encoded=encoded
                )
        finally:
            self._attempt_timeout = None

    async def _connect_within(self, timeout_s: float) -> None:
        """On the committer's loop."""
        try:
            async with asyncio.timeout(timeout_s) as self._attempt_timeout:
                self._conn = await self._connect()
        finally:
            self._attempt_timeout = None

    async def _keep_rejected(self, entry: Entry) -> bool:
        """Keep a rejected group in the rejected spool; whether it could be."""
        try:
            frame = encode_frame(entry.records)
        except (TypeError, ValueError):
            return False  # not even JSON: nothing can keep it
        stored, reason = await asyncio.to_thread(self._rejects.append, [frame])
        if stored:
            log.error("the rejected rows are kept in %s", self._rejects.directory)
        else:
            log.error("the rejected rows are dropped: %s", reason)
        return bool(stored)

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self.url,
            autocommit=True,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="lsd-writer",
            prepare_threshold=self._prepare_threshold,
        )
        configure(conn)
        self._identity = await _identity(conn)
        self._rejects.identity = self._identity
        return conn

    async def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed and self._loop is not None:
            await self._there(_close(conn))  # the connection belongs to the committer's loop


async def _close(conn: psycopg.AsyncConnection[Any]) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        await conn.close()


async def _identity(conn: psycopg.AsyncConnection[Any]) -> DatabaseIdentity:
    """PostgreSQL's system identifier (when the role may read pg_control_system()) and the database's name."""
    cursor = await conn.execute("SELECT current_database(), has_function_privilege('pg_control_system()', 'EXECUTE')")
    name, allowed = await cursor.fetchone() or ("", False)
    system: str | None = None
    if allowed:
        cursor = await conn.execute("SELECT system_identifier::text FROM pg_control_system()")
        row = await cursor.fetchone()
        system = None if row is None else row[0]
    return DatabaseIdentity(system, name)
