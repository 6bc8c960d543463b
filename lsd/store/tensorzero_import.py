"""Copying a TensorZero deployment's PostgreSQL history into LSD's tables (`lsd import tensorzero`).

TensorZero (2026.x) keeps its Postgres tables in the schema `tensorzero`. This module reads them through a plain
psycopg connection in read-only mode, in id order, one keyset batch (`WHERE id > last ORDER BY id LIMIT n`) at a
time, so no long transaction holds the source; it maps each row to LSD's record dataclasses and writes each batch
through `BulkInserter`'s idempotent path (COPY into staging, `INSERT ... ON CONFLICT DO NOTHING`), after creating
LSD's daily partitions for the days the batch holds. A second run therefore inserts nothing new.

Both of TensorZero's Postgres layouts are read: the payload columns split into `*_data` tables (migration
20260211/20260213 `split_inference_data_tables`) and the earlier one with them on the inference tables; a column a
release lacks reads as NULL. The mapping, per LSD table (docs/migrating-from-tensorzero.md has it as a table):

- `chat_inferences` / `json_inferences` <- `tensorzero.chat_inferences` / `json_inferences` joined to
  `chat_inference_data` / `json_inference_data` on (id, created_at): id, function_name, variant_name, episode_id,
  input, output, inference_params, tags, processing_time_ms, ttft_ms as they are; json's output_schema as it is;
  chat's tool_params built from dynamic_tools, allowed_tools, tool_choice and parallel_tool_calls (TensorZero stores
  a config tool by name only, so those are listed under `allowed_tools`); input_tokens, output_tokens and cost are
  the sums over the inference's `model_inferences`, finish_reason and cached those of its last one (what
  TensorZero's own listing reports); api_key_public_id from the tag `tensorzero::api_key_public_id`; config_hash
  NULL (TensorZero's snapshot_hash names a TensorZero config, not an LSD one); created_at from the id, as LSD
  always does. auxiliary_content and snapshot_hash are not carried.
- `chat_inference_data` / `json_inference_data`: extra_body (NULL when `[]`); rendered_input
  `{"system", "messages"}` and original_response from the last model inference's system, input_messages and
  raw_response; extra_headers NULL (TensorZero stores none).
- `model_inferences` <- `tensorzero.model_inferences` (+ `model_inference_data`): latency_ms from
  response_time_ms; attempt is the row's place among its inference's model inferences in id order; inference_kind,
  function_name and variant_name from the inference it served (`chat` and NULLs when the source no longer has it);
  provider_type `unknown` (TensorZero records the provider's name, not its type); status `ok` (TensorZero records
  successful calls only; a fork's `error` column makes it `error`); streamed when ttft_ms is set.
- `model_inference_data`: raw_request and raw_response; request_headers and api_key_sha256 NULL.
- `boolean_metric_feedback` / `float_metric_feedback`: target_level is `inference` when the source has an inference
  with that id, else `episode` (TensorZero stores no level; its config holds it).
- `comment_feedback`: target_level from target_type. `demonstration_feedback`: value as it is (a JSON string
  holding JSON is decoded).

Rows that LSD cannot hold are skipped and counted: an id that is not a UUIDv7 (its partition comes from the id),
and an inference with no output (a failed one, recorded by some forks).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from lsd.ids import uuid7_floor
from lsd.records import InputStringRecord, Record
from lsd.store.bulk import BulkInserter, configure
from lsd.store.database import DatabaseUnreachable, describe, scrub
from lsd.store.keys import NotMigrated
from lsd.store.tensorzero_rows import (
    BOOLEAN,
    CHAT,
    COMMENT,
    FLOAT,
    JSON,
    MODEL,
    SOURCES,
    Row,
    SourceTable,
    SourceTarget,
    SourceUsage,
    comment_record,
    demonstration_record,
    finish_reason_of,
    inference_records,
    int_value,
    json_value,
    metric_record,
    model_records,
)

__all__ = [
    "BATCH_ROWS",
    "SOURCE_SCHEMA",
    "ImportReport",
    "SourceUnreachable",
    "SourceUnrecognised",
    "TableCount",
    "import_tensorzero",
]

SOURCE_SCHEMA = "tensorzero"
BATCH_ROWS = 1000
CONNECT_TIMEOUT_S = 10

Layout = Mapping[str, frozenset[str]]  # source table -> its columns


class SourceUnreachable(RuntimeError):
    """The TensorZero database did not answer. The message never contains the password."""


class SourceUnrecognised(RuntimeError):
    """The source database answers but holds no TensorZero tables this importer knows."""


@dataclass(slots=True)
class TableCount:
    """One LSD table's rows: mapped from the source, and inserted (the rest were already there)."""

    read: int = 0
    imported: int = 0


@dataclass(slots=True)
class ImportReport:
    source: str  # host:port/dbname, no credentials
    dry_run: bool
    tables: dict[str, TableCount] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # source table -> reason -> rows
    absent: list[str] = field(default_factory=list)  # source tables this release of TensorZero lacks

    def count(self, table: str) -> TableCount:
        return self.tables.setdefault(table, TableCount())

    def skip(self, source_table: str, reason: str) -> None:
        reasons = self.skipped.setdefault(source_table, {})
        reasons[reason] = reasons.get(reason, 0) + 1


async def import_tensorzero(
    source_url: str,
    target_url: str,
    *,
    since: date | None = None,
    dry_run: bool = False,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[str, TableCount], None] | None = None,
) -> ImportReport:
    """Copy every row of the source's TensorZero tables (those whose id is on or after `since`, UTC) into the
    LSD database at `target_url`; with `dry_run`, read and map them but write nothing. `progress` is called after
    each batch with the LSD table and its running count.

    Raises SourceUnreachable or SourceUnrecognised for the source; DatabaseUnreachable or NotMigrated for LSD's
    database; psycopg.Error for a failure mid-way (the batches already committed stay, and a rerun skips them)."""
    report = ImportReport(describe(source_url), dry_run)
    async with _source(source_url) as src:
        layout = await _layout(src)
        async with _target(target_url, dry_run) as dst:
            importer = _Importer(src, dst, layout, report, batch_rows, progress)
            start = _start(since)
            for source in SOURCES:
                if source.table not in layout:
                    report.absent.append(source.table)
                    continue
                await importer.copy(source, start)
    return report


def _start(since: date | None) -> uuid.UUID:
    """The keyset's first bound: just below the smallest UUIDv7 of `since` (UTC midnight); the nil UUID for None."""
    if since is None:
        return uuid.UUID(int=0)
    floor = uuid7_floor(datetime(since.year, since.month, since.day, tzinfo=UTC))
    return uuid.UUID(int=max(floor.int - 1, 0))


@contextlib.asynccontextmanager
async def _source(url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    where = describe(url)
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="lsd-import"
        )
    except psycopg.Error as exc:
        raise SourceUnreachable(f"cannot connect to the TensorZero database {where}: {_first_line(exc, url)}") from None
    try:
        # Every statement of this session is read-only: the importer never changes TensorZero's data.
        await conn.execute("SET default_transaction_read_only = on")
        yield conn
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _target(url: str, dry_run: bool) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S, application_name="lsd-import"
        )
    except psycopg.Error as exc:
        raise DatabaseUnreachable(
            f"cannot connect to LSD's database {describe(url)}: {_first_line(exc, url)}"
        ) from None
    try:
        configure(conn)
        cur = await conn.execute(
            "SELECT to_regclass('chat_inferences') IS NOT NULL"
            " AND to_regprocedure('lsd_ensure_partitions(date, integer)') IS NOT NULL"
        )
        row = await cur.fetchone()
        if not row or not row[0]:
            raise NotMigrated("LSD's database is not migrated: run `lsd migrate` first")
        if dry_run:
            await conn.execute("SET default_transaction_read_only = on")
        yield conn
    finally:
        await conn.close()


def _first_line(exc: BaseException, url: str) -> str:
    text = str(exc).strip()
    return scrub(text.splitlines()[0] if text else type(exc).__name__, url)


async def _layout(src: psycopg.AsyncConnection[Any]) -> Layout:
    """The columns of each TensorZero table in the source; SourceUnrecognised when there is nothing to import."""
    cur = await src.execute(
        "SELECT table_name::text, column_name::text FROM information_schema.columns WHERE table_schema = %s",
        (SOURCE_SCHEMA,),
    )
    found: dict[str, set[str]] = {}
    for table, column in await cur.fetchall():
        found.setdefault(table, set()).add(column)
    layout = {table: frozenset(columns) for table, columns in found.items()}
    known = [s for s in SOURCES if s.table in layout]
    if not any(s in known for s in (CHAT, JSON)):
        raise SourceUnrecognised(
            f"no TensorZero tables found (schema {SOURCE_SCHEMA!r} has no chat_inferences or json_inferences): "
            "is this the PostgreSQL database of a TensorZero gateway? A deployment that kept its observability "
            "data in ClickHouse has it there (see docs/migrating-from-tensorzero.md)"
        )
    for source in known:
        have = layout[source.table] | (layout.get(source.data_table, frozenset()) if source.data_table else set())
        missing = sorted(source.required - have)
        if missing:
            raise SourceUnrecognised(
                f"{SOURCE_SCHEMA}.{source.table} is not shaped as TensorZero's: no column {', '.join(missing)}"
            )
    return layout


def _select(source: SourceTable, layout: Layout) -> sql.Composed:
    """One keyset batch of `source`: its columns (NULL where this release lacks one), the payload joined from its
    `_data` table in the split layout, in id order after %(after)s."""
    main = layout[source.table]
    data = layout.get(source.data_table, frozenset()) if source.data_table else frozenset()
    items: list[sql.Composable] = []
    for column in source.columns:
        if column in main:
            expr: sql.Composable = sql.SQL("m.{}").format(sql.Identifier(column))
        elif column in data:
            expr = sql.SQL("d.{}").format(sql.Identifier(column))
        else:
            expr = sql.NULL
        items.append(sql.SQL("{} AS {}").format(expr, sql.Identifier(column)))
    if source is MODEL:
        # Its place among the model inferences of its inference (index on (inference_id, id)).
        items.append(
            sql.SQL(
                "(SELECT count(*) FROM {}.model_inferences o WHERE o.inference_id = m.inference_id AND o.id <= m.id)"
                " AS attempt"
            ).format(sql.Identifier(SOURCE_SCHEMA))
        )
    join: sql.Composable = sql.SQL("")
    if data and source.data_table:
        on = "d.id = m.id AND d.created_at = m.created_at" if "created_at" in data else "d.id = m.id"
        join = sql.SQL(" LEFT JOIN {}.{} d ON {}").format(
            sql.Identifier(SOURCE_SCHEMA), sql.Identifier(source.data_table), sql.SQL(on)
        )
    return sql.SQL("SELECT {} FROM {}.{} m{} WHERE m.id > %(after)s ORDER BY m.id LIMIT %(limit)s").format(
        sql.SQL(", ").join(items), sql.Identifier(SOURCE_SCHEMA), sql.Identifier(source.table), join
    )


class _Importer:
    def __init__(
        self,
        src: psycopg.AsyncConnection[Any],
        dst: psycopg.AsyncConnection[Any],
        layout: Layout,
        report: ImportReport,
        batch_rows: int,
        progress: Callable[[str, TableCount], None] | None,
    ) -> None:
        self.src = src
        self.dst = dst
        self.layout = layout
        self.report = report
        self.batch_rows = batch_rows
        self.progress = progress
        self.inserter = BulkInserter()
        self.days: set[date] = set()

    async def copy(self, source: SourceTable, start: uuid.UUID) -> None:
        """Every row of `source` after `start`, batch by batch in id order."""
        query = _select(source, self.layout)
        after = start
        while True:
            cur = self.src.cursor(row_factory=dict_row)
            await cur.execute(query, {"after": after, "limit": self.batch_rows})
            rows = await cur.fetchall()
            if not rows:
                return
            after = rows[-1]["id"]
            kept = [row for row in rows if self._keep(source, row)]
            records = await self._records(source, kept)
            await self._write(records)
            if len(rows) < self.batch_rows:
                return

    def _keep(self, source: SourceTable, row: Row) -> bool:
        if not isinstance(row["id"], uuid.UUID) or row["id"].version != 7:
            self.report.skip(source.table, "id is not a UUIDv7")
            return False
        if source in (CHAT, JSON) and (row["output"] is None or row["error"] is not None):
            self.report.skip(source.table, "a failed inference (no output)")
            return False
        return True

    async def _records(self, source: SourceTable, rows: list[Row]) -> list[Record]:
        if not rows:
            return []
        if source in (CHAT, JSON):
            usage = await self._usage([row["id"] for row in rows])
            return [r for row in rows for r in inference_records(source, row, usage.get(row["id"]))]
        if source is MODEL:
            targets = await self._targets([row["inference_id"] for row in rows])
            return [r for row in rows for r in model_records(row, targets.get(row["inference_id"]))]
        if source in (BOOLEAN, FLOAT):
            targets = await self._targets([row["target_id"] for row in rows])
            return [metric_record(source, row, row["target_id"] in targets) for row in rows]
        if source is COMMENT:
            return [comment_record(row) for row in rows]
        return [demonstration_record(row) for row in rows]

    async def _write(self, records: Sequence[Record]) -> None:
        read: dict[str, int] = {}
        for record in records:
            read[record.TABLE] = read.get(record.TABLE, 0) + 1
        inserted: dict[str, int] = {}
        if records and not self.report.dry_run:
            await self._ensure_partitions(
                {r.created_at.date() for r in records if not isinstance(r, InputStringRecord)}
            )
            inserted = await self.inserter.insert(self.dst, records, idempotent=True, cooperative=False)
        for table, n in read.items():
            count = self.report.count(table)
            count.read += n
            count.imported += inserted.get(table, 0)
            if self.progress is not None:
                self.progress(table, count)

    async def _ensure_partitions(self, days: set[date]) -> None:
        """LSD's partitions of every imported day, each day once per run (lsd_ensure_partitions is idempotent)."""
        for day in sorted(days - self.days):
            await self.dst.execute("SELECT lsd_ensure_partitions(%s::date, 0)", (day,))
            self.days.add(day)

    async def _usage(self, inference_ids: list[uuid.UUID]) -> dict[uuid.UUID, SourceUsage]:
        """Token, cost and finish facts of these inferences, from their model inferences."""
        if MODEL.table not in self.layout:
            return {}
        columns = self.layout[MODEL.table]
        cost = sql.SQL("sum(m.cost)") if "cost" in columns else sql.NULL
        cur = await self.src.execute(
            sql.SQL(
                "SELECT m.inference_id, sum(m.input_tokens), sum(m.output_tokens), {},"
                " (array_agg(m.finish_reason ORDER BY m.id DESC))[1],"
                " (array_agg(m.cached ORDER BY m.id DESC))[1],"
                " (array_agg(m.id ORDER BY m.id DESC))[1]"
                " FROM {}.model_inferences m WHERE m.inference_id = ANY(%s) GROUP BY m.inference_id"
            ).format(cost, sql.Identifier(SOURCE_SCHEMA)),
            (inference_ids,),
        )
        facts = await cur.fetchall()
        payloads = await self._payloads([row[6] for row in facts])
        usage: dict[uuid.UUID, SourceUsage] = {}
        for inference_id, inputs, outputs, total, finish, cached, last in facts:
            system, messages, response = payloads.get(last, (None, None, None))
            rendered = None if messages is None else {"system": system, "messages": json_value(messages)}
            usage[inference_id] = SourceUsage(
                int_value(inputs), int_value(outputs), total, finish_reason_of(finish), bool(cached), rendered, response
            )
        return usage

    async def _payloads(self, model_inference_ids: list[uuid.UUID]) -> dict[uuid.UUID, tuple[Any, Any, Any]]:
        """system, input_messages and raw_response of these model inferences."""
        table = MODEL.data_table if MODEL.data_table in self.layout else MODEL.table
        columns = self.layout[table or MODEL.table]
        picked = [sql.Identifier(c) if c in columns else sql.NULL for c in ("system", "input_messages", "raw_response")]
        cur = await self.src.execute(
            sql.SQL("SELECT id, {} FROM {}.{} WHERE id = ANY(%s)").format(
                sql.SQL(", ").join(picked), sql.Identifier(SOURCE_SCHEMA), sql.Identifier(table or MODEL.table)
            ),
            (model_inference_ids,),
        )
        return {row[0]: (row[1], row[2], row[3]) for row in await cur.fetchall()}

    async def _targets(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, SourceTarget]:
        """The inferences among `ids` that the source holds."""
        parts = [
            sql.SQL("SELECT id, {}, function_name, variant_name FROM {}.{} WHERE id = ANY(%(ids)s)").format(
                sql.Literal(kind), sql.Identifier(SOURCE_SCHEMA), sql.Identifier(source.table)
            )
            for kind, source in (("chat", CHAT), ("json", JSON))
            if source.table in self.layout
        ]
        cur = await self.src.execute(sql.SQL(" UNION ALL ").join(parts), {"ids": list(set(ids))})
        return {row[0]: SourceTarget(row[1], row[2], row[3]) for row in await cur.fetchall()}
