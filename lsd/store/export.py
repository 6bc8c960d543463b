"""Reading every stored chat and json inference of a filter, oldest first, in batches: what an export writes.

One server-side cursor (a `DECLARE ... CURSOR` in a read transaction on one connection), fetched `batch_rows` at a
time, so memory holds one batch whatever the number of rows; a time bound becomes an id bound (lsd.store.queries),
so PostgreSQL prunes the daily partitions outside it. The rows come in id (= time) order, chat and json merged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

import orjson
from psycopg import sql

from lsd.store.database import Database
from lsd.store.queries import Params, time_condition

DEFAULT_BATCH_ROWS = 1000


@dataclass(frozen=True, slots=True)
class ExportQuery:
    """Which inferences to export. `since` is inclusive, `until` exclusive, as in list_inferences."""

    function_name: str | None = None
    variant_name: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    with_feedback: bool = False
    tags: Mapping[str, str] | None = None  # each of these tags, with this value (an agent session's, ...)


@dataclass(frozen=True, slots=True)
class ExportRow:
    """One stored inference with what an analysis needs; `feedback` and `demonstration` when asked for."""

    kind: str  # chat | json
    id: UUID
    episode_id: UUID
    function_name: str
    variant_name: str
    created_at: dt.datetime
    input: Any
    output: Any
    tool_params: Any
    output_schema: Any
    inference_params: Any
    extra_body: Any
    tags: dict[str, str]
    processing_time_ms: int | None
    ttft_ms: int | None
    input_tokens: int | None
    output_tokens: int | None
    cost: Decimal | None
    finish_reason: str | None
    model_name: str | None  # the model and provider that answered (its successful attempt's)
    model_provider_name: str | None
    feedback: dict[str, Any] | None = None  # the latest value of each boolean and float metric, by name
    demonstration: Any = None  # the latest demonstration's value


_BRANCH = sql.SQL("""
    SELECT {kind}::text AS kind, i.id, i.episode_id, i.function_name, i.variant_name, i.created_at,
           lsd_input(i.input, i.input_refs, i.id) AS input, i.output,
           {tool_params} AS tool_params, {output_schema} AS output_schema, i.inference_params,
           (SELECT d.extra_body FROM {data} d WHERE d.inference_id = i.id) AS extra_body,
           i.tags, i.processing_time_ms, i.ttft_ms, i.input_tokens, i.output_tokens, i.cost, i.finish_reason,
           a.model_name, a.model_provider_name
    FROM {table} i
    LEFT JOIN LATERAL (
        -- the answering attempt: attempt ids are UUIDv7s made after the inference's (an hour of margin prunes)
        SELECT m.model_name, m.model_provider_name FROM model_inferences m
        WHERE m.inference_id = i.id AND m.status = 'ok'
          AND m.id >= lsd_uuid7_floor(lsd_uuid7_time(i.id) - interval '1 hour')
        ORDER BY m.attempt DESC LIMIT 1
    ) a ON TRUE
    WHERE {where}""")

# The latest value of each metric given on the inference (or, for an episode-level metric, on its episode), and
# the latest demonstration: feedback is partitioned by its own id, so each is an index probe per partition.
_FEEDBACK = sql.SQL("""
    , (SELECT jsonb_object_agg(l.metric_name, l.value) FROM (
           SELECT DISTINCT ON (f.metric_name) f.metric_name, f.value FROM (
               SELECT b.id, b.metric_name, to_jsonb(b.value) AS value FROM boolean_metric_feedback b
               WHERE b.target_id IN (u.id, u.episode_id)
               UNION ALL
               SELECT x.id, x.metric_name, to_jsonb(x.value) FROM float_metric_feedback x
               WHERE x.target_id IN (u.id, u.episode_id)
           ) f ORDER BY f.metric_name, f.id DESC
       ) l) AS feedback,
      (SELECT df.value FROM demonstration_feedback df WHERE df.inference_id = u.id
       ORDER BY df.id DESC LIMIT 1) AS demonstration""")

_STATEMENT = sql.SQL("SELECT u.*{feedback} FROM ({chat} UNION ALL {json}) u ORDER BY u.id")


def export_statement(query: ExportQuery) -> tuple[sql.Composed, dict[str, Any]]:
    """The export's SELECT and its named parameters."""
    params = Params()
    conds: list[sql.Composable] = []
    if query.function_name is not None:
        conds.append(sql.SQL("i.function_name = {}").format(params(query.function_name)))
    if query.variant_name is not None:
        conds.append(sql.SQL("i.variant_name = {}").format(params(query.variant_name)))
    if query.tags:  # containment: the tags' GIN index (jsonb_path_ops) finds the rows
        conds.append(sql.SQL("i.tags @> {}::jsonb").format(params(orjson.dumps(dict(query.tags)).decode())))
    if query.since is not None:
        conds.append(time_condition(">=", query.since, sql.SQL("i.id"), params))
    if query.until is not None:
        conds.append(time_condition("<", query.until, sql.SQL("i.id"), params))
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    branches = {
        kind: _BRANCH.format(
            kind=sql.Literal(kind),
            tool_params=sql.SQL("i.tool_params" if kind == "chat" else "NULL::jsonb"),
            output_schema=sql.SQL("i.output_schema" if kind == "json" else "NULL::jsonb"),
            data=sql.Identifier(f"{kind}_inference_data"),
            table=sql.Identifier(f"{kind}_inferences"),
            where=where,
        )
        for kind in ("chat", "json")
    }
    statement = _STATEMENT.format(
        feedback=_FEEDBACK if query.with_feedback else sql.SQL(""), chat=branches["chat"], json=branches["json"]
    )
    return statement, params.values


async def export_batches(
    database: Database, query: ExportQuery, batch_rows: int = DEFAULT_BATCH_ROWS
) -> AsyncIterator[list[ExportRow]]:
    """The inferences `query` selects, oldest first, `batch_rows` at a time (the last batch may be shorter; none
    when nothing matches). Holds one connection of the reading pool, in one transaction, until exhausted or closed.
    Raises DatabaseUnavailable when PostgreSQL cannot answer."""
    statement, params = export_statement(query)
    async with database.reading("query") as conn, conn.transaction():
        cursor = conn.cursor(name="lsd_export")
        try:
            await cursor.execute(statement, params)
            while True:
                rows = await cursor.fetchmany(batch_rows)
                if not rows:
                    return
                yield [ExportRow(*row) for row in rows]
        finally:
            await cursor.close()
