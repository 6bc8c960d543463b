"""Bulk insert of records with binary COPY, all tables in one transaction: direct, or idempotent through staging.

The direct path COPYs straight into each table; a batch of at most SMALL_BATCH_ROWS rows and SMALL_BATCH_CHARS of
JSON goes in one statement instead when its values allow (lsd.store.one_statement: one round trip instead of one per
COPY). The idempotent path COPYs into a temporary staging table and then runs `INSERT ... SELECT ... ON CONFLICT DO
NOTHING`, so rows already present (same primary key) are skipped: the writer takes it for every batch retried after a
failed flush, whose rows may already have been committed, and for a replayed chunk that a primary key refused on the
direct path.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import attrgetter
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Transformer
from psycopg.pq import Format
from psycopg.types.json import Json, Jsonb, JsonbBinaryDumper, set_json_dumps

from lsd.records import Record
from lsd.store import escaping, one_statement

try:  # what copy.write_row runs, so that a row encoded beforehand is the same bytes; private to psycopg, so guarded
    from psycopg._copy_base import format_row_binary
except ImportError:  # pragma: no cover - a psycopg that moved it: rows are then encoded by the COPY itself
    format_row_binary = None

YIELD_EVERY_ROWS = 4
# At most this many rows go in one statement (lsd.store.one_statement). Measured against COPY, client + PostgreSQL CPU
# per flush: 2 inferences (8 rows) 1,325 -> 365 us, 10 (40 rows) 1,800 -> 1,050, 40 (160 rows) 3,000 -> 2,800 (there
# PostgreSQL's share grows past COPY's).
SMALL_BATCH_ROWS = 100
# ... and at most this many characters of JSON: PostgreSQL parses the statement's JSON, every string unescaped and
# copied again by `->>`, where COPY's binary rows go in as they are. A few long streams (a 100-token stream stores its
# ~18 KB of provider events as the raw response) made each flush cost PostgreSQL milliseconds of CPU: at 250
# concurrent streams on two cores, this bound took lsd's per-token delay p99 from 1.13-1.48 to 1.07-1.28 ms and its
# TTFT p99 from 2.1-3.1 to 1.5-3.4 ms (three alternating pairs; docs/performance.md, session 10).
SMALL_BATCH_CHARS = 64 * 1024
# Binary COPY's framing around rows encoded beforehand (TableSpec.encode): the signature, flags and header
# extension length (PostgreSQL's COPY docs, "Binary Format"), and the trailer.
COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"
ENCODED_WRITE_BYTES = 1024 * 1024  # encoded rows go to the COPY in writes of about this size


def by_copy(rows: int) -> bool:
    """Whether a direct (not idempotent) batch of `rows` rows goes by COPY rather than in one statement, by its
    length in rows; a short batch of long rows goes by COPY too (SMALL_BATCH_CHARS, `BulkInserter.copied`)."""
    return rows > SMALL_BATCH_ROWS


def _long(encoded: Sequence[bytes | None] | None) -> bool:
    """The rows encoded beforehand already pass SMALL_BATCH_CHARS: the batch goes by COPY without trying JSON."""
    return encoded is not None and sum(len(row) for row in encoded if row is not None) > SMALL_BATCH_CHARS


@dataclass(frozen=True, slots=True)
class TableSpec:
    """How one record class maps to its table: columns in field order and their PostgreSQL types, and the statements
    a flush sends, rendered once (composing them took ~100 us of a small flush's ~1.2 ms)."""

    table: str
    columns: tuple[str, ...]
    types: tuple[str, ...]
    row: Callable[[Any], tuple[Any, ...]]
    oids: tuple[int, ...] = ()  # the types' oids, for copy.set_types
    copy: bytes = b""  # COPY into the table
    stage: bytes = b""  # CREATE the idempotent path's temporary staging table
    copy_staged: bytes = b""  # COPY into it
    insert_staged: bytes = b""  # INSERT its rows into the table, skipping those present
    at_once: tuple[str, str, str] | None = None  # quoted table, quoted columns, select list: for one_statement
    encode: Callable[[Any], bytes] | None = None  # a record as one binary COPY row (for the gateway's loop only)


def table_spec(
    conn: psycopg.AsyncConnection[Any], table: str, columns: tuple[str, ...], types: tuple[str, ...]
) -> TableSpec:
    """The spec of `table`, its statements rendered for `conn` (any connection with the same encoding will do)."""
    names = sql.SQL(", ").join(map(sql.Identifier, columns))
    target, staging = sql.Identifier(table), sql.Identifier(f"lsd_stage_{table}")
    copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)")
    # Only the record's columns, no constraints: columns the record lacks get the table's defaults in the INSERT,
    # as on the direct path.
    stage = sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ON COMMIT DELETE ROWS AS SELECT {} FROM {} WITH NO DATA")
    insert = sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT DO NOTHING")
    registry = conn.adapters.types
    select = one_statement.select_list(types)
    at_once = None if select is None else (target.as_string(conn), names.as_string(conn), select)
    row = _row_function(columns, types)
    oids = tuple(registry.get_oid(t) for t in types)
    return TableSpec(
        table,
        columns,
        types,
        row,
        oids=oids,
        copy=copy.format(target, names).as_bytes(conn),
        stage=stage.format(staging, names, target).as_bytes(conn),
        copy_staged=copy.format(staging, names).as_bytes(conn),
        insert_staged=insert.format(target, names, names, staging).as_bytes(conn),
        at_once=at_once,
        encode=_row_encoder(conn, oids, row) if format_row_binary is not None else None,
    )


def _row_encoder(
    conn: psycopg.AsyncConnection[Any], oids: tuple[int, ...], to_row: Callable[[Any], tuple[Any, ...]]
) -> Callable[[Any], bytes]:
    """A record as the bytes `copy.write_row` would send for it after `copy.set_types(oids)` on `conn`: the same
    dumpers (`configure`'s), through a transformer of its own, for the one thread that calls it."""
    transformer = Transformer.from_context(conn)
    transformer.set_dumper_types(list(oids), Format.BINARY)

    def encode(record: Any) -> bytes:
        out = bytearray()
        format_row_binary(to_row(record), transformer, out)
        return bytes(out)

    return encode


def _row_function(columns: tuple[str, ...], types: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    getter = attrgetter(*columns)
    get: Callable[[Any], tuple[Any, ...]] = getter if len(columns) > 1 else (lambda record: (getter(record),))
    numeric = tuple(i for i, t in enumerate(types) if t == "numeric")
    escaped = tuple(i for i, c in enumerate(columns) if c in escaping.ESCAPED_TEXT_COLUMNS and types[i] == "text")
    if escaped:
        get = _escaping_row(get, escaped)
    if not numeric:
        return get

    # The binary numeric dumper takes Decimal or int, not float: convert by shortest repr (0.1 stays 0.1).
    # Records already carry Decimal (lsd.inference.recording.money); this only guards other producers. A plain loop,
    # not any() over a generator: this runs for every row, and costs ~0.16 µs instead of ~0.5.
    def row(record: Any) -> tuple[Any, ...]:
        values = get(record)
        for i in numeric:
            if isinstance(values[i], float):
                return tuple(
                    Decimal(repr(v)) if isinstance(v, float) and j in numeric else v for j, v in enumerate(values)
                )
        return values

    return row


def _escaping_row(get: Callable[[Any], tuple[Any, ...]], escaped: tuple[int, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """`get`, with the provider text columns at `escaped` able to hold U+0000 (lsd.store.escaping); a scan of each
    such value, a new tuple only for a row that has one."""
    needs = escaping.needs_escape

    def row(record: Any) -> tuple[Any, ...]:
        values = get(record)
        for i in escaped:
            value = values[i]
            if value is not None and needs(value):
                return tuple(
                    escaping.escape_text(v) if j in escaped and v is not None else v for j, v in enumerate(values)
                )
        return values

    return row


_WRAPPERS = frozenset((Json, Jsonb))


class _JsonbCopyDumper(JsonbBinaryDumper):
    """jsonb for a binary COPY in one call per value (psycopg's own takes two Python calls and two isinstance);
    U+0000 escaped (lsd.store.escaping)."""

    _dumps = staticmethod(escaping.dumps)

    def dump(self, obj: Any) -> Buffer | None:
        # A set lookup of the type, not isinstance against a union; the encoding and escaping in one call: ~0.15 us
        # less per value, 7.4 -> 6.6 us of COPY formatting per inference.
        if type(obj) in _WRAPPERS:  # psycopg's wrappers, which may name their own dumps
            return super().dump(obj)
        return _dumps_jsonb(obj)


_dumps_jsonb = escaping.dumps_jsonb


def configure(conn: psycopg.AsyncConnection[Any]) -> None:
    """Set up a connection `BulkInserter` will use: JSON encoded by orjson, as the spool encodes it (so a replay
    inserts the same bytes), and the jsonb dumper COPY uses after set_types."""
    set_json_dumps(escaping.dumps, context=conn)
    conn.adapters.register_dumper(None, _JsonbCopyDumper)  # by oid only: what COPY looks up after set_types


async def _write_rows(copy: psycopg.AsyncCopy, spec: TableSpec, rows: list[Record], cooperative: bool) -> None:
    """Rows encoded here, one `write_row` each. `cooperative`: on a loop that serves requests, let other tasks in
    every few rows, so a flush does not stall them for its whole batch (one worker at 500 req/s, p99: ~3.7 ms without
    yields, ~2.8 every 8 rows, ~2.4 every 4 rows, at no measurable CPU cost; every 2 rows was no better)."""
    copy.set_types(spec.oids)
    to_row, write_row = spec.row, copy.write_row
    every = YIELD_EVERY_ROWS if cooperative else 0
    for i, row in enumerate(rows, 1):
        await write_row(to_row(row))
        if every and not i % every:
            await let_others_run()


async def _write_encoded(copy: psycopg.AsyncCopy, rows: list[bytes]) -> None:
    """Rows encoded beforehand, framed as a binary COPY, in writes of about ENCODED_WRITE_BYTES."""
    chunk: list[bytes] = [COPY_SIGNATURE]
    size = 0
    for row in rows:
        chunk.append(row)
        size += len(row)
        if size >= ENCODED_WRITE_BYTES:
            await copy.write(b"".join(chunk))
            chunk, size = [], 0
    chunk.append(COPY_TRAILER)
    await copy.write(b"".join(chunk))


async def let_others_run() -> None:
    """One pass of the event loop for the other tasks (requests) in the middle of a COPY."""
    await asyncio.sleep(0)


class BulkInserter:
    """Inserts records on a connection the caller owns; caches table specs (valid across reconnects)."""

    def __init__(self) -> None:
        self._specs: dict[type, TableSpec] = {}
        self.specs: Mapping[type, TableSpec] = self._specs  # read by other threads: a spec, once there, never changes
        self._local_encoders: dict[type, Callable[[Any], bytes]] = {}  # this thread's, for rows not encoded before
        self._statements: dict[tuple[str, ...], bytes] = {}  # one_statement's, by the tables it writes
        self.copied = False  # the last direct insert went by COPY (read by the writer once the flush is over)

    async def spec(self, conn: psycopg.AsyncConnection[Any], record_type: type) -> TableSpec:
        spec = self._specs.get(record_type)
        if spec is None:
            table: str = record_type.TABLE  # type: ignore[attr-defined]
            cur = await conn.execute(
                "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute "
                "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                (table,),
            )
            column_types = dict(await cur.fetchall())
            columns = tuple(f.name for f in dataclasses.fields(record_type))
            spec = table_spec(conn, table, columns, tuple(column_types[c] for c in columns))
            self._specs[record_type] = spec
        return spec

    async def insert(
        self,
        conn: psycopg.AsyncConnection[Any],
        records: Sequence[Record],
        *,
        idempotent: bool,
        cooperative: bool = True,
        encoded: Sequence[bytes | None] | None = None,
    ) -> dict[str, int]:
        """Insert `records` in one transaction; returns rows inserted per table (skipped duplicates excluded).
        `cooperative`: let other tasks run every YIELD_EVERY_ROWS rows while encoding. `encoded`: the records as
        their spec's `encode` wrote them, in order, None for those it did not: a direct COPY sends these bytes
        (and encodes the others here)."""
        by_type: dict[type, list[Record]] = defaultdict(list)
        for record in records:
            by_type[type(record)].append(record)
        specs = [await self.spec(conn, t) for t in by_type]
        if not idempotent and not by_copy(len(records)) and not _long(encoded):
            done = await self._insert_at_once(conn, specs, list(by_type.values()))
            if done is not None:
                self.copied = False
                return done
        if not idempotent:
            self.copied = True
        rows_by_type = None if encoded is None or idempotent else self._encoded(conn, specs, records, encoded)
        inserted: dict[str, int] = {}
        async with conn.transaction():
            for record_type, spec, rows in zip(by_type, specs, by_type.values(), strict=True):
                if idempotent:
                    await conn.execute(spec.stage)
                async with conn.cursor().copy(spec.copy_staged if idempotent else spec.copy) as copy:
                    if rows_by_type is not None:
                        await _write_encoded(copy, rows_by_type[record_type])
                    else:
                        await _write_rows(copy, spec, rows, cooperative)
                if idempotent:
                    cur = await conn.execute(spec.insert_staged)
                    inserted[spec.table] = cur.rowcount
                else:
                    inserted[spec.table] = len(rows)
        return inserted

    def _encoded(
        self,
        conn: psycopg.AsyncConnection[Any],
        specs: list[TableSpec],
        records: Sequence[Record],
        encoded: Sequence[bytes | None],
    ) -> dict[type, list[bytes]]:
        """Each table's rows as binary COPY rows: as encoded when queued, else encoded now (on this thread: through
        transformers of its own, never the specs' `encode`, which belong to the gateway's loop)."""
        by_type: dict[type, list[bytes]] = defaultdict(list)
        local = self._local_encoders
        for record, row in zip(records, encoded, strict=True):
            record_type = type(record)
            if row is None:
                encode = local.get(record_type)
                if encode is None:
                    spec = self._specs[record_type]
                    encode = local[record_type] = _row_encoder(conn, spec.oids, spec.row)
                row = encode(record)
            by_type[record_type].append(row)
        return by_type

    async def _insert_at_once(
        self, conn: psycopg.AsyncConnection[Any], specs: list[TableSpec], groups: list[list[Record]]
    ) -> dict[str, int] | None:
        """All rows in one statement (one transaction), or None, having sent nothing, when a table or a value
        needs COPY, or when the rows are long (SMALL_BATCH_CHARS)."""
        params: list[str] = []
        chars = 0
        parts: list[tuple[str, str, str]] = []
        for spec, rows in zip(specs, groups, strict=True):
            if spec.at_once is None:
                return None
            parts.append(spec.at_once)
            to_row = spec.row
            encoded = one_statement.encode([to_row(row) for row in rows])
            if encoded is None:
                return None
            chars += len(encoded)
            if chars > SMALL_BATCH_CHARS:
                return None
            params.append(encoded)
        key = tuple(spec.table for spec in specs)
        query = self._statements.get(key)
        if query is None:
            query = self._statements[key] = one_statement.statement(parts).encode()
        await conn.execute(query, params)  # built from the catalog's names, not from input
        return {spec.table: len(rows) for spec, rows in zip(specs, groups, strict=True)}
