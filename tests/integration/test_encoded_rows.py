"""Rows encoded as they are queued (Committer.encode, on the gateway's loop) store exactly what a COPY that encodes
them itself stores, and a flush of many rows sends those bytes instead of encoding again on the committer's thread."""

from __future__ import annotations

import dataclasses
from datetime import UTC
from pathlib import Path
from typing import Any, cast

import psycopg
import pytest

from lsd.config.model import BatchWritesConfig
from lsd.records import ModelInferenceDataRecord, ModelInferenceRecord, Record
from lsd.store import bulk
from lsd.store.bulk import BulkInserter
from lsd.store.writer import Writer
from tests.integration.test_durability import every_kind_of_record
from tests.integration.test_one_statement import conn, delete, stored  # noqa: F401 (conn: the fixture)
from tests.integration.test_writer import chat_ids, eventually, ids_of, inference, inferences, observability


def tricky_records() -> list[Record]:
    """Every table's field types, and the values only COPY's escaping writes exactly (U+0000, U+E000)."""
    records = [
        dataclasses.replace(r, created_at=r.created_at.replace(tzinfo=UTC)) if r.created_at.tzinfo is None else r
        for r in every_kind_of_record()
    ]
    nul = inference("a NUL \x00 and the escape \ue000 in an answer")
    data = next(r for r in records if isinstance(r, ModelInferenceDataRecord))
    escaped = dataclasses.replace(
        data, raw_response="raw \x00 text \ue000", model_inference_id=cast(ModelInferenceRecord, nul[1]).id
    )
    return [*records, *nul, escaped]


def count_encoded_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row counts of every COPY that sends rows encoded beforehand (bulk._write_encoded), as it happens."""
    written: list[int] = []
    write_encoded = bulk._write_encoded

    async def counting(copy: Any, rows: list[bytes]) -> None:
        written.append(len(rows))
        await write_encoded(copy, rows)

    monkeypatch.setattr(bulk, "_write_encoded", counting)
    return written


async def test_encoded_rows_store_what_copy_stores(
    conn: psycopg.AsyncConnection[Any],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bulk, "SMALL_BATCH_ROWS", 0)  # COPY for any batch
    records = tricky_records()
    inserter = BulkInserter()
    await inserter.insert(conn, records, idempotent=False)  # COPY encoding each row itself
    expected = await stored(conn, records)
    assert all(len(rows) == 1 for rows in expected)
    await delete(conn, records)
    specs = inserter.specs
    # Every other row encoded beforehand, the others by the flush itself (rows queued before the queue was long).
    encoded = [specs[type(r)].encode(r) if i % 2 else None for i, r in enumerate(records)]  # type: ignore[misc]
    written = count_encoded_writes(monkeypatch)
    monkeypatch.setattr(bulk, "ENCODED_WRITE_BYTES", 64)  # several writes per table: the framing holds across them
    await inserter.insert(conn, records, idempotent=False, encoded=encoded)
    assert sum(written) == len(records)
    assert await stored(conn, records) == expected


async def test_the_writer_encodes_once_it_knows_the_tables_and_flushes_the_bytes(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    written = count_encoded_writes(monkeypatch)
    batch = BatchWritesConfig(flush_interval_ms=50, max_rows=10_000)
    writer = Writer(database_url, observability(tmp_path, batch_writes=batch))
    await writer.open()
    try:
        first = inference("before the committer has read the tables")
        assert writer._committer.encode(first) is None  # no spec yet: the flush encodes these rows itself
        writer.submit(first)
        await eventually(lambda: writer.stats.queued_rows == 0)
        assert not written
        many = inferences(bulk.SMALL_BATCH_ROWS)  # two rows each: past the one-statement bound, a COPY
        assert writer._committer.encode(many[0]) is not None
        for group in many:
            writer.submit(group)
        await eventually(lambda: writer.stats.queued_rows == 0)
    finally:
        await writer.close()
    assert sum(written) == 2 * len(many)
    assert set(chat_ids(database_url)) == ids_of([first, *many])
