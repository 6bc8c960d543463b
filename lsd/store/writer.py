"""The observability writer: one per process; queues records and writes them in batches with binary COPY.

Every observability row (inferences, provider attempts, payloads, feedback) goes through `Writer`.
A flush writes all queued tables in one transaction on a dedicated connection, so a batch is atomic.
A failed flush is retried with backoff; a retried batch goes through a staging table and
`INSERT ... ON CONFLICT DO NOTHING`, so a flush whose COMMIT succeeded but whose reply was lost is not
written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import psycopg
from psycopg import sql

from lsd.config.model import ObservabilityConfig
from lsd.records import Record

log = logging.getLogger("lsd.writer")


@dataclass(frozen=True, slots=True)
class _TableSpec:
    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    getter: Any


@dataclass
class WriterStats:
    queued_rows: int = 0
    written_rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dropped_rows: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    flushes: int = 0
    failed_flushes: int = 0
    last_flush_seconds: float = 0.0


class Writer:
    """Batched, asynchronous writer. No I/O until `open()`; `close()` flushes everything first."""

    def __init__(self, url: str, config: ObservabilityConfig) -> None:
        self.url = url
        self.config = config
        self.enabled = config.enabled
        self.stats = WriterStats()
        self._queue: deque[tuple[Record, asyncio.Future[None] | None]] = deque()
        self._wake = asyncio.Event()
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._specs: dict[type, _TableSpec] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        batch = config.batch_writes
        self._interval = batch.flush_interval_ms / 1000 if batch.enabled else 0.0
        self._max_rows = batch.max_rows if batch.enabled else 1

    async def open(self) -> None:
        if not self.enabled:
            return
        self._conn = await self._connect()
        self._task = asyncio.create_task(self._run(), name="lsd-writer")

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, connect_timeout=5)
        await conn.execute("SET application_name = 'lsd-writer'")
        return conn

    async def _spec(self, record_type: type) -> _TableSpec:
        spec = self._specs.get(record_type)
        if spec is None:
            assert self._conn is not None
            table: str = record_type.TABLE  # type: ignore[attr-defined]
            cur = await self._conn.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            types = dict(await cur.fetchall())
            columns = tuple(f.name for f in dataclasses.fields(record_type))
            spec = _TableSpec(table, columns, tuple(types[c] for c in columns), attrgetter(*columns))
            self._specs[record_type] = spec
        return spec

    # -- enqueue -------------------------------------------------------------------------------------------

    def submit(self, records: Sequence[Record]) -> None:
        """Queue records without waiting (async_writes = true)."""
        if not self.enabled:
            return
        for record in records:
            self._queue.append((record, None))
        self.stats.queued_rows = len(self._queue)
        if len(self._queue) >= self._max_rows or self._interval == 0:
            self._wake.set()

    async def write(self, records: Sequence[Record]) -> None:
        """Queue records and return once they are committed (async_writes = false)."""
        if not self.enabled or not records:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        for record in records[:-1]:
            self._queue.append((record, None))
        self._queue.append((records[-1], future))
        self.stats.queued_rows = len(self._queue)
        if len(self._queue) >= self._max_rows or self._interval == 0:
            self._wake.set()
        await asyncio.shield(future)

    async def record(self, records: Sequence[Record]) -> None:
        """Queue or write, as `async_writes` says."""
        if self.config.async_writes:
            self.submit(records)
        else:
            await self.write(records)

    # -- flushing ------------------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not (self._closing and not self._queue):
            if not self._queue or (len(self._queue) < self._max_rows and not self._closing):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._interval or None)
                self._wake.clear()
                if not self._queue:
                    continue
            batch = [self._queue.popleft() for _ in range(min(self._max_rows, len(self._queue)))]
            self.stats.queued_rows = len(self._queue)
            await self._flush_with_retry(batch)

    async def _flush_with_retry(self, batch: list[tuple[Record, asyncio.Future[None] | None]]) -> None:
        delay = 0.05
        retried = False
        while True:
            started = time.perf_counter()
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await self._connect()
                await self._flush([record for record, _ in batch], idempotent=retried)
            except (psycopg.Error, OSError) as exc:
                self.stats.failed_flushes += 1
                log.warning("flush of %d rows failed (%s); retrying in %.2fs", len(batch), exc, delay)
                if self._conn is not None and not self._conn.closed:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await self._conn.close()
                self._conn = None
                retried = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.stats.flushes += 1
            self.stats.last_flush_seconds = time.perf_counter() - started
            for _, future in batch:
                if future is not None and not future.done():
                    future.set_result(None)
            return

    async def _flush(self, records: list[Record], *, idempotent: bool) -> None:
        assert self._conn is not None
        by_type: dict[type, list[Record]] = defaultdict(list)
        for record in records:
            by_type[type(record)].append(record)
        specs = [await self._spec(t) for t in by_type]
        async with self._conn.transaction():
            for spec, rows in zip(specs, by_type.values(), strict=True):
                target = spec.table
                if idempotent:
                    target = f"lsd_stage_{spec.table}"
                    await self._conn.execute(
                        sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} (LIKE {}) ON COMMIT DELETE ROWS").format(
                            sql.Identifier(target), sql.Identifier(spec.table)
                        )
                    )
                copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
                    sql.Identifier(target), sql.SQL(", ").join(map(sql.Identifier, spec.columns))
                )
                async with self._conn.cursor().copy(copy_sql) as copy:
                    copy.set_types(list(spec.types))
                    for row in rows:
                        await copy.write_row(spec.getter(row))
                if idempotent:
                    await self._conn.execute(
                        sql.SQL("INSERT INTO {} SELECT * FROM {} ON CONFLICT DO NOTHING").format(
                            sql.Identifier(spec.table), sql.Identifier(target)
                        )
                    )
        for spec, rows in zip(specs, by_type.values(), strict=True):
            self.stats.written_rows[spec.table] += len(rows)

    async def close(self) -> None:
        """Flush every queued record, then close the connection."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        await self._task
        self._task = None
        if self._conn is not None:
            await self._conn.close()
