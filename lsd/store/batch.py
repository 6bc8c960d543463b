"""Batches in the database: submission, the per-batch poll claim, and recording results exactly once.

Every write here is transactional and synchronous with the caller (not through the async writer): a batch id
returned to a client is already committed, and results are recorded in the same transaction that moves the
batch out of 'pending' (`complete`), so two processes that finish the same batch record it once: the second
blocks on the row lock, then finds the row no longer pending, and its transaction inserts nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from uuid import UUID

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from lsd.records import Record
from lsd.store.bulk import BulkInserter
from lsd.store.database import Database
from lsd.store.escaping import escape_text

# pg_try_advisory_lock key for the cluster-wide batch poller: 'LSD' + 'btch'.
BATCH_POLLER_LOCK_KEY = 0x4C5344_62746368


@dataclass(frozen=True, slots=True)
class BatchRow:
    """A batch_requests row (one per batch; its history is in batch_request_events)."""

    id: UUID
    created_at: datetime
    function_name: str
    function_type: str
    variant_name: str
    model_name: str
    model_provider_name: str
    provider_type: str
    provider_batch_id: str | None
    provider_status: str | None
    provider_data: Any
    status: str
    num_inferences: int
    raw_request: str | None
    raw_response: str | None
    errors: Any
    tags: Any
    last_polled_at: datetime | None
    completed_at: datetime | None


@dataclass(frozen=True, slots=True)
class BatchItemRow:
    """A batch_model_inferences row: one input of a batch, as submitted."""

    inference_id: UUID
    created_at: datetime
    batch_id: UUID
    function_name: str
    variant_name: str
    episode_id: UUID
    input: Any
    rendered_input: Any
    tool_params: Any
    inference_params: Any
    output_schema: Any
    raw_request: str | None
    model_name: str
    model_provider_name: str
    tags: Any


@dataclass(frozen=True, slots=True)
class BatchEvent:
    """A batch_request_events row: one status change of a provider batch."""

    id: UUID
    created_at: datetime
    batch_id: UUID
    status: str
    provider_status: str | None
    raw_request: str | None
    raw_response: str | None
    errors: Any


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A recorded inference of a batch, as GET /batch_inference answers it."""

    inference_id: UUID
    episode_id: UUID
    variant_name: str
    function_type: str
    output: Any
    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    finish_reason: str | None


_JSON_COLUMNS = frozenset({"provider_data", "errors", "tags", "input", "rendered_input", "tool_params"})
_JSON_COLUMNS |= {"inference_params", "output_schema"}
_BATCH_COLUMNS = ", ".join(f.name for f in fields(BatchRow))


def _values(row: Any) -> tuple[Any, ...]:
    values = ((f.name, getattr(row, f.name)) for f in fields(row))
    return tuple(Jsonb(v) if n in _JSON_COLUMNS and v is not None else v for n, v in values)


def _insert_sql(table: str, row_type: type) -> str:
    names = [f.name for f in fields(row_type)]
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(['%s'] * len(names))})"


_INSERT_BATCH = _insert_sql("batch_requests", BatchRow)
_INSERT_ITEM = _insert_sql("batch_model_inferences", BatchItemRow)
_INSERT_EVENT = _insert_sql("batch_request_events", BatchEvent)


async def insert_batch(database: Database, batch: BatchRow, items: Sequence[BatchItemRow], event: BatchEvent) -> None:
    """The batch, its items and its first event, in one transaction."""
    async with database.connection("batch") as conn, conn.transaction():
        await conn.execute(_INSERT_BATCH, _values(batch))
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT_ITEM, [_values(item) for item in items])
        await conn.execute(_INSERT_EVENT, _values(event))


async def get_batch(database: Database, batch_id: UUID) -> BatchRow | None:
    async with database.connection("batch") as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_BATCH_COLUMNS} FROM batch_requests WHERE id = %s", (batch_id,))
        row = await cur.fetchone()
    return BatchRow(**row) if row else None


async def batch_items(database: Database, batch_id: UUID) -> list[BatchItemRow]:
    """The batch's items in submission order (their UUIDv7 ids were made in order)."""
    columns = ", ".join(f.name for f in fields(BatchItemRow))
    async with database.connection("batch") as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {columns} FROM batch_model_inferences WHERE batch_id = %s ORDER BY inference_id", (batch_id,)
        )
        return [BatchItemRow(**row) for row in await cur.fetchall()]


async def item_in_batch(database: Database, batch_id: UUID, inference_id: UUID) -> bool:
    async with database.connection("batch") as conn:
        cur = await conn.execute(
            "SELECT 1 FROM batch_model_inferences WHERE inference_id = %s AND batch_id = %s", (inference_id, batch_id)
        )
        return await cur.fetchone() is not None


async def claim_poll(database: Database, batch_id: UUID, interval_s: float) -> BatchRow | None:
    """Take this batch's next poll: the row when it is pending and was not polled within `interval_s` (by any
    process), else None. The claim is one UPDATE, so however many ask, one of them polls per interval."""
    async with database.connection("batch") as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "UPDATE batch_requests SET last_polled_at = now() "
            "WHERE id = %s AND status = 'pending' "
            "AND (last_polled_at IS NULL OR last_polled_at <= now() - make_interval(secs => %s)) "
            f"RETURNING {_BATCH_COLUMNS}",
            (batch_id, interval_s),
        )
        row = await cur.fetchone()
    return BatchRow(**row) if row else None


def _stored(text: str | None) -> str | None:
    """A provider's text as a text column holds it (U+0000 escaped: lsd.store.escaping)."""
    return None if text is None else escape_text(text)


async def record_progress(database: Database, batch_id: UUID, event: BatchEvent) -> None:
    """A still-pending batch whose provider status changed (e.g. validating -> in_progress): one more event."""
    async with database.connection("batch") as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE batch_requests SET provider_status = %s, raw_response = %s "
            "WHERE id = %s AND status = 'pending' AND provider_status IS DISTINCT FROM %s RETURNING id",
            (event.provider_status, _stored(event.raw_response), batch_id, event.provider_status),
        )
        if await cur.fetchone() is not None:
            await conn.execute(_INSERT_EVENT, _values(event))


async def complete(database: Database, event: BatchEvent, records: Sequence[Record]) -> bool:
    """Move the batch to its final status and insert its inference rows, in one transaction. False (and
    nothing written) when it had already left 'pending': another process recorded it first."""
    async with database.connection("batch") as conn, conn.transaction():
        cur = await conn.execute(
            "UPDATE batch_requests SET status = %s, provider_status = %s, raw_response = %s, errors = %s, "
            "completed_at = %s WHERE id = %s AND status = 'pending' RETURNING id",
            (
                event.status,
                event.provider_status,
                _stored(event.raw_response),
                Jsonb(event.errors),
                event.created_at,
                event.batch_id,
            ),
        )
        if await cur.fetchone() is None:
            return False
        await conn.execute(_INSERT_EVENT, _values(event))
        if records:
            await BulkInserter().insert(conn, records, idempotent=False)
    return True


async def pending_batch_ids(database: Database, limit: int = 1000) -> list[UUID]:
    async with database.connection("batch") as conn:
        cur = await conn.execute(
            "SELECT id FROM batch_requests WHERE status = 'pending' ORDER BY id LIMIT %s", (limit,)
        )
        return [row[0] for row in await cur.fetchall()]


async def stored_results(database: Database, function_type: str, ids: Sequence[UUID]) -> dict[UUID, StoredResult]:
    """The recorded inferences among `ids`, by id (the id range bounds the partitions scanned)."""
    if not ids:
        return {}
    table = "json_inferences" if function_type == "json" else "chat_inferences"
    async with database.connection("batch") as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT id AS inference_id, episode_id, variant_name, output, input_tokens, output_tokens, "
            f"cost::float8 AS cost, finish_reason FROM {table} "
            "WHERE id = ANY(%s) AND id BETWEEN %s AND %s",
            (list(ids), min(ids), max(ids)),
        )
        return {row["inference_id"]: StoredResult(function_type=function_type, **row) for row in await cur.fetchall()}


@contextlib.asynccontextmanager
async def poller_lock(database: Database) -> AsyncIterator[bool]:
    """Hold the cluster-wide poller lock for the block; yields False (and holds nothing) when another process
    has it. The lock is a session lock: it is held on a session connection, never a pooled one."""
    async with database.session() as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (BATCH_POLLER_LOCK_KEY,))
        row = await cur.fetchone()
        locked = bool(row and row[0])
        try:
            yield locked
        finally:
            if locked:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (BATCH_POLLER_LOCK_KEY,))
