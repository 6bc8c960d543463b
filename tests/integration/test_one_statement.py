"""lsd.store.one_statement: a small batch in one statement stores exactly what binary COPY stores, and whatever it
cannot carry (U+0000, U+E000, NaN, bytes) goes through COPY."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg import sql

from lsd.records import Record
from lsd.store import bulk, one_statement
from lsd.store.bulk import BulkInserter, configure
from lsd.store.committer import count_by_table
from tests.integration.test_durability import every_kind_of_record
from tests.integration.test_writer import inference


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    connection = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    configure(connection)
    try:
        yield connection
    finally:
        await connection.close()


def _key(record: Record) -> tuple[str, Any]:
    first = dataclasses.fields(record)[0].name  # id, inference_id or model_inference_id: the row's own key
    return first, getattr(record, first)


async def stored(conn: psycopg.AsyncConnection[Any], records: list[Record]) -> list[Any]:
    """Each record's row as PostgreSQL holds it (its own columns, as JSON text: exact for every type)."""
    rows = []
    for record in records:
        key, value = _key(record)
        columns = sql.SQL(", ").join(sql.Identifier(f.name) for f in dataclasses.fields(record))
        query = sql.SQL("SELECT row_to_json(x)::text FROM (SELECT {} FROM {} WHERE {} = %s) x").format(
            columns, sql.Identifier(record.TABLE), sql.Identifier(key)
        )
        cur = await conn.execute(query, (value,))
        rows.append(await cur.fetchall())
    return rows


async def delete(conn: psycopg.AsyncConnection[Any], records: list[Record]) -> None:
    for record in records:
        key, value = _key(record)
        query = sql.SQL("DELETE FROM {} WHERE {} = %s").format(sql.Identifier(record.TABLE), sql.Identifier(key))
        await conn.execute(query, (value,))


async def test_one_statement_stores_what_copy_stores(
    conn: psycopg.AsyncConnection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every field type; an aware time for the embedding (COPY refuses a naive one, and so does this path: below).
    records = [
        dataclasses.replace(r, created_at=r.created_at.replace(tzinfo=UTC)) if r.created_at.tzinfo is None else r  # type: ignore[type-var]
        for r in every_kind_of_record()
    ]
    used: list[bool] = []
    encode = one_statement.encode
    monkeypatch.setattr(one_statement, "encode", lambda rows: used.append(True) or encode(rows))
    inserter = BulkInserter()
    assert await inserter.insert(conn, records, idempotent=False) == count_by_table([records])
    assert used  # the one-statement path took them
    at_once = await stored(conn, records)
    assert all(len(rows) == 1 for rows in at_once)
    await delete(conn, records)
    monkeypatch.setattr(bulk, "SMALL_BATCH_ROWS", 0)  # COPY only
    used.clear()
    await inserter.insert(conn, records, idempotent=False)
    assert not used
    assert await stored(conn, records) == at_once


@pytest.mark.parametrize(
    "text",
    ["a NUL \x00 in a provider's answer", "the escape character \ue000 itself"],
)
async def test_text_only_copy_can_escape_goes_through_copy(conn: psycopg.AsyncConnection[Any], text: str) -> None:
    group = inference(text)  # the output holds it: a jsonb value escaped by lsd.store.escaping
    assert one_statement.encode([(text,)]) is None
    await BulkInserter().insert(conn, group, idempotent=False)
    cur = await conn.execute("SELECT output FROM chat_inferences WHERE id = %s", (group[0].id,))
    row = await cur.fetchone()
    assert row is not None and row[0] == [{"type": "text", "text": text[::-1]}]  # unescaped on read


def test_encode_refuses_what_json_cannot_carry_exactly() -> None:
    assert one_statement.encode([(math.nan,)]) is None
    assert one_statement.encode([(math.inf,)]) is None
    assert one_statement.encode([(b"bytes",)]) is None
    assert one_statement.encode([({"k\x00": 1},)]) is None
    assert one_statement.encode([(2**70,)]) is None  # past 64 bits: orjson refuses it
    assert one_statement.encode([(Decimal("0.10"), Decimal("-Infinity"))]) == '[["0.10","-Infinity"]]'
    naive = datetime(2026, 12, 6, 10, 0, 0)
    assert one_statement.encode([(naive,)]) is None  # COPY refuses it as data: the same outcome through COPY
    assert one_statement.encode([(naive.replace(tzinfo=UTC),)]) == '[["2026-12-06T10:00:00+00:00"]]'


def test_only_plain_column_types_take_the_one_statement_path() -> None:
    assert one_statement.select_list(["uuid", "jsonb", "numeric"]) == (
        "(e->>0)::uuid, NULLIF(e->1, 'null'::jsonb), (e->>2)::numeric"
    )
    assert one_statement.select_list(["uuid", "bytea"]) is None
    assert one_statement.select_list(["integer[]"]) is None
    # text[] (input_refs): a JSON array of strings, or null
    assert one_statement.select_list(["text[]"]) == (
        "(SELECT array_agg(x ORDER BY n) FROM jsonb_array_elements_text(NULLIF(e->0, 'null'::jsonb))"
        " WITH ORDINALITY AS a(x, n))"
    )


async def test_a_short_batch_of_long_rows_goes_by_copy(
    conn: psycopg.AsyncConnection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Few rows but many bytes (long streams' raw responses): COPY, not JSON that PostgreSQL would parse; the
    inserter says which way the batch went, and rows encoded beforehand past the limit skip the JSON attempt."""
    inserter = BulkInserter()
    short = inference("short")
    assert await inserter.insert(conn, short, idempotent=False) == count_by_table([short])
    assert not inserter.copied
    long_text = "x" * (bulk.SMALL_BATCH_CHARS + 1)
    group = inference(long_text)
    attempts: list[bool] = []
    encode = one_statement.encode
    monkeypatch.setattr(one_statement, "encode", lambda rows: attempts.append(True) or encode(rows))
    assert await inserter.insert(conn, group, idempotent=False) == count_by_table([group])
    assert inserter.copied and attempts  # tried in JSON, too long: sent nothing that way, then COPY
    cur = await conn.execute("SELECT output FROM chat_inferences WHERE id = %s", (group[0].id,))
    row = await cur.fetchone()
    assert row is not None and row[0] == [{"type": "text", "text": long_text[::-1]}]
    # Encoded beforehand (the writer does it once a flush went by COPY): their length alone decides.
    attempts.clear()
    again = inference(long_text)
    encoded: list[bytes | None] = []
    for record in again:
        encode_row = inserter.specs[type(record)].encode
        assert encode_row is not None
        encoded.append(encode_row(record))
    assert await inserter.insert(conn, again, idempotent=False, encoded=encoded) == count_by_table([again])
    assert inserter.copied and not attempts
    # A short batch again: back to one statement.
    small = inference("small again")
    await inserter.insert(conn, small, idempotent=False)
    assert not inserter.copied and attempts
