"""Evaluation rows: runs, per-datapoint results, human judgements, and stored inferences as a dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lsd.store.database import Database

Json = Any


@dataclass(frozen=True, slots=True)
class RunRow:
    id: UUID
    created_at: datetime
    evaluation_name: str
    function_name: str
    variant_name: str | None
    status: str  # running | completed | failed
    config: Json
    tags: Json
    finished_at: datetime | None = None
    summary: Json | None = None


@dataclass(frozen=True, slots=True)
class ResultRow:
    id: UUID
    created_at: datetime
    evaluation_run_id: UUID
    datapoint_id: str
    inference_id: UUID | None
    evaluator_name: str
    metric_name: str
    value: Json | None
    source: str  # evaluator | human
    error: str | None
    input: Json
    output: Json | None
    output_hash: str | None
    reference: Json | None
    feedback_id: UUID | None
    evaluator_inference_id: UUID | None


@dataclass(frozen=True, slots=True)
class HumanFeedbackRow:
    id: UUID
    created_at: datetime
    evaluation_run_id: UUID
    inference_id: UUID
    metric_name: str
    value: Json
    output: Json | None
    tags: Json
    datapoint_id: str
    evaluator_name: str
    output_hash: str


@dataclass(frozen=True, slots=True)
class StoredInference:
    """A stored inference as a datapoint: its input, and its latest demonstration as the reference."""

    id: UUID
    input: Json
    output: Json
    tags: Json
    demonstration: Json | None
    has_demonstration: bool


_JSON_COLUMNS = frozenset({"config", "tags", "summary", "value", "input", "output", "reference"})


def _params(row: Any) -> list[Any]:
    """Column values in field order; JSON columns wrapped (None stays SQL NULL)."""
    values = [(f.name, getattr(row, f.name)) for f in fields(row)]
    return [Jsonb(value) if name in _JSON_COLUMNS and value is not None else value for name, value in values]


def _insert(table: str, row_type: type) -> sql.Composed:
    names = [f.name for f in fields(row_type)]
    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(table),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )


_INSERT_RUN = _insert("inference_evaluation_runs", RunRow)
_INSERT_RESULT = _insert("inference_evaluation_results", ResultRow)
_INSERT_HUMAN = _insert("inference_evaluation_human_feedback", HumanFeedbackRow)
_RUN_COLUMNS = ", ".join(f.name for f in fields(RunRow))
_RESULT_COLUMNS = ", ".join(f.name for f in fields(ResultRow))
_HUMAN_COLUMNS = ", ".join(f.name for f in fields(HumanFeedbackRow))


async def insert_run(database: Database, run: RunRow) -> None:
    async with database.connection("evaluations") as conn:
        await conn.execute(_INSERT_RUN, _params(run))


async def finish_run(database: Database, run_id: UUID, status: str, finished_at: datetime, summary: Json) -> None:
    async with database.connection("evaluations") as conn:
        await conn.execute(
            "UPDATE inference_evaluation_runs SET status = %s, finished_at = %s, summary = %s WHERE id = %s",
            (status, finished_at, Jsonb(summary) if summary is not None else None, run_id),
        )


async def insert_results(database: Database, rows: Sequence[ResultRow]) -> None:
    """One datapoint's results, in one transaction."""
    if not rows:
        return
    async with database.connection("evaluations") as conn, conn.transaction(), conn.cursor() as cur:
        await cur.executemany(_INSERT_RESULT, [_params(r) for r in rows])


async def get_run(database: Database, run_id: UUID, *, replica: bool = False) -> RunRow | None:
    """`replica=True` reads from the read pool (the runs API); a write that checks the run reads the primary."""
    door = database.reading if replica else database.connection
    async with door("evaluations") as conn, conn.cursor(row_factory=class_row(RunRow)) as cur:
        await cur.execute(f"SELECT {_RUN_COLUMNS} FROM inference_evaluation_runs WHERE id = %s", (run_id,))
        return await cur.fetchone()


async def list_runs(
    database: Database, *, evaluation_name: str | None, limit: int, before: UUID | None = None
) -> list[RunRow]:
    """Newest first; `before` pages on (ids are UUIDv7, so id order is time order)."""
    query = (
        f"SELECT {_RUN_COLUMNS} FROM inference_evaluation_runs "
        "WHERE (%(name)s::text IS NULL OR evaluation_name = %(name)s) "
        "AND (%(before)s::uuid IS NULL OR id < %(before)s) "
        "ORDER BY id DESC LIMIT %(limit)s"
    )
    async with database.reading("evaluations") as conn, conn.cursor(row_factory=class_row(RunRow)) as cur:
        await cur.execute(query, {"name": evaluation_name, "before": before, "limit": limit})
        return await cur.fetchall()


async def run_results(database: Database, run_id: UUID) -> list[ResultRow]:
    async with database.reading("evaluations") as conn, conn.cursor(row_factory=class_row(ResultRow)) as cur:
        await cur.execute(
            f"SELECT {_RESULT_COLUMNS} FROM inference_evaluation_results WHERE evaluation_run_id = %s ORDER BY id",
            (run_id,),
        )
        return await cur.fetchall()


async def find_result(database: Database, run_id: UUID, datapoint_id: str, evaluator_name: str) -> ResultRow | None:
    async with database.connection("evaluations") as conn, conn.cursor(row_factory=class_row(ResultRow)) as cur:
        await cur.execute(
            f"SELECT {_RESULT_COLUMNS} FROM inference_evaluation_results "
            "WHERE evaluation_run_id = %s AND datapoint_id = %s AND evaluator_name = %s",
            (run_id, datapoint_id, evaluator_name),
        )
        return await cur.fetchone()


async def insert_human_feedback(database: Database, row: HumanFeedbackRow) -> None:
    async with database.connection("evaluations") as conn:
        await conn.execute(_INSERT_HUMAN, _params(row))


async def human_judgement(
    database: Database, metric_name: str, datapoint_id: str, output_hash: str
) -> HumanFeedbackRow | None:
    """The latest human judgement of this datapoint's output under this metric, if any."""
    async with database.connection("evaluations") as conn, conn.cursor(row_factory=class_row(HumanFeedbackRow)) as cur:
        await cur.execute(
            f"SELECT {_HUMAN_COLUMNS} FROM inference_evaluation_human_feedback "
            "WHERE metric_name = %s AND datapoint_id = %s AND output_hash = %s ORDER BY id DESC LIMIT 1",
            (metric_name, datapoint_id, output_hash),
        )
        return await cur.fetchone()


_INFERENCE_TABLES = {"chat": "chat_inferences", "json": "json_inferences"}


async def select_inferences(
    database: Database,
    *,
    function_type: Literal["chat", "json"],
    function_name: str,
    variant_name: str | None,
    tags: Mapping[str, str],
    limit: int,
) -> list[StoredInference]:
    """A function's stored inferences, newest first, each with its latest demonstration. The inferences evaluation
    runs made (tagged `lsd::evaluation_run_id`) are left out: they carry their datapoint's tags, so a selection by
    tags would otherwise take in the outputs of its own earlier runs."""
    query = sql.SQL(
        "SELECT i.id, lsd_input(i.input, i.input_refs, i.id) AS input, i.output, i.tags, d.value AS demonstration, "
        "d.id IS NOT NULL AS has_demonstration "
        "FROM {} i LEFT JOIN LATERAL (SELECT id, value FROM demonstration_feedback "
        "WHERE inference_id = i.id ORDER BY id DESC LIMIT 1) d ON true "
        "WHERE i.function_name = %(function)s AND (%(variant)s::text IS NULL OR i.variant_name = %(variant)s) "
        "AND i.tags @> %(tags)s AND NOT i.tags ? 'lsd::evaluation_run_id' ORDER BY i.id DESC LIMIT %(limit)s"
    ).format(sql.Identifier(_INFERENCE_TABLES[function_type]))
    params = {"function": function_name, "variant": variant_name, "tags": Jsonb(dict(tags)), "limit": limit}
    async with database.reading("evaluations") as conn, conn.cursor(row_factory=class_row(StoredInference)) as cur:
        await cur.execute(query, params)
        return await cur.fetchall()
