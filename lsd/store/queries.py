"""Reading stored inferences: list with filters, order and keyset pagination, or get by id; partitions pruned.

The query objects live in lsd.store.list_query and the list statement in lsd.store.list_statement; this module
resolves metrics, runs the statements (docs/querying.md says what each shape reads) and re-exports both.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg.rows import dict_row

from lsd.errors import InvalidRequest
from lsd.store.database import Database
from lsd.store.escaping import unescape_optional
from lsd.store.list_query import (
    _EPOCH,
    _MS,
    ATTEMPT_LOOKBACK,
    AndFilter,
    BooleanMetricFilter,
    Comparison,
    DemonstrationFilter,
    Direction,
    Filter,
    FloatMetricFilter,
    ListQuery,
    Metric,
    MetricType,
    NotFilter,
    OrderBy,
    OrFilter,
    OutputSource,
    Params,
    StoredRow,
    TagFilter,
    TimeFilter,
    time_condition,
    uuid7_floor_ms,
)
from lsd.store.list_statement import edge_statement, first_id_descending, list_statement, match_ids_statement

__all__ = [
    "ATTEMPT_LOOKBACK",
    "AndFilter",
    "BooleanMetricFilter",
    "Comparison",
    "DemonstrationFilter",
    "Direction",
    "Filter",
    "FloatMetricFilter",
    "ListQuery",
    "Metric",
    "MetricType",
    "NotFilter",
    "OrFilter",
    "OrderBy",
    "OutputSource",
    "Params",
    "StoredRow",
    "TagFilter",
    "TimeFilter",
    "attempts_statement",
    "list_inferences",
    "list_statement",
    "resolve_metrics",
    "time_condition",
    "uuid7_floor_ms",
]

# -- metrics -----------------------------------------------------------------------------------------------

_METRIC_LOOKUP = """
SELECT 'boolean', target_level FROM (
    SELECT target_level FROM boolean_metric_feedback WHERE metric_name = %(name)s ORDER BY id DESC LIMIT 1) b
UNION ALL
SELECT 'float', target_level FROM (
    SELECT target_level FROM float_metric_feedback WHERE metric_name = %(name)s ORDER BY id DESC LIMIT 1) f
"""


def metric_references(query: ListQuery) -> list[tuple[str, str, MetricType | None]]:
    """Every metric the query names: (name, request path, required type or None for ordering)."""
    refs: list[tuple[str, str, MetricType | None]] = [
        (o.metric_name, o.path, None) for o in query.order_by if o.by == "metric" and o.metric_name
    ]
    stack = [query.filters] if query.filters is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, BooleanMetricFilter):
            refs.append((node.metric_name, node.path, "boolean"))
        elif isinstance(node, FloatMetricFilter):
            refs.append((node.metric_name, node.path, "float"))
        elif isinstance(node, AndFilter | OrFilter):
            stack.extend(node.children)
        elif isinstance(node, NotFilter):
            stack.append(node.child)
    return refs


async def resolve_metrics(
    conn: psycopg.AsyncConnection[Any], query: ListQuery, configured: Mapping[str, Metric]
) -> dict[str, Metric]:
    """Type and level of each metric the query names: from the config, else as recorded in the feedback tables
    (a metric that is not configured exists once it has feedback).

    Raises InvalidRequest naming the field for an unknown metric or one of the wrong type.
    """
    metrics: dict[str, Metric] = {}
    for name, path, wanted in metric_references(query):
        if name not in metrics:
            if name in configured:
                metrics[name] = configured[name]
            else:
                cur = await conn.execute(_METRIC_LOOKUP, {"name": name})
                found = await cur.fetchall()
                if not found:
                    raise InvalidRequest.at(path, f"unknown metric {name!r}")
                metrics[name] = Metric(name, found[0][0], "episode" if found[0][1] == "episode" else "inference")
        if wanted is not None and metrics[name].type != wanted:
            raise InvalidRequest.at(path, f"metric {name!r} is a {metrics[name].type} metric")
    return metrics


_ATTEMPTS = """
SELECT m.id, m.inference_id, m.created_at, m.attempt, m.model_name, m.model_provider_name, m.provider_type,
       m.status, m.error_kind, m.error, m.latency_ms, m.ttft_ms, m.input_tokens, m.output_tokens, m.cost,
       m.finish_reason, m.cached, m.streamed,
       -- as they crossed the wire: lsd_attempt_payload rebuilds what is stored once (0012_payload_once.sql)
       lsd_attempt_payload(d.raw_request, d.payload_refs, d.inference_id) AS raw_request,
       lsd_attempt_payload(d.raw_response, d.payload_refs, d.inference_id) AS raw_response
FROM model_inferences m
LEFT JOIN model_inference_data d ON d.model_inference_id = m.id AND d.model_inference_id >= %(floor)s
WHERE m.inference_id = ANY(%(ids)s) AND m.id >= %(floor)s
ORDER BY m.inference_id, m.attempt, m.id
"""


def attempts_statement(inference_ids: Sequence[UUID]) -> tuple[str, dict[str, Any]]:
    """The attempts of some inferences; ids before the earliest inference (less a margin) are pruned."""
    earliest = min(i.int >> 80 for i in inference_ids)
    floor_ms = max(earliest - ATTEMPT_LOOKBACK // _MS, 0)
    return _ATTEMPTS, {"ids": list(inference_ids), "floor": uuid7_floor_ms(floor_ms)}


# -- running them ------------------------------------------------------------------------------------------

# For the list statement only, in its own transaction (SET LOCAL: nothing outlives it, so a pooled connection behind
# a transaction-mode PgBouncer carries no state). A list statement names every daily partition of four tables unless
# a time bound prunes them: planning it took 15-40 ms at 90 days of partitions, executing it 1-3 ms. Prepared
# (gateway.database.prepared_statements) and planned once generically, the partitions outside the bounds are pruned
# at run time and the call costs 1-2 ms (docs/scaling.md). JIT compilation and parallel workers never pay off for a
# bounded query.
QUERY_SETTINGS = (
    "SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('jit', 'off', true), "
    "set_config('max_parallel_workers_per_gather', '0', true)"
)


def demonstration_output(kind: str, value: Any) -> Any:
    """A stored demonstration in the shape of an inference's output: a json function's value as `{raw, parsed}`;
    a chat function's tool calls with `raw_name` and `raw_arguments` (rows written before LSD stored them)."""
    if kind == "json":
        return {"raw": orjson.dumps(value).decode(), "parsed": value}
    if not isinstance(value, list):
        return value
    out = []
    for block in value:
        if isinstance(block, dict) and block.get("type") == "tool_call" and "raw_name" not in block:
            arguments = block.get("arguments")
            raw = arguments if isinstance(arguments, str) else orjson.dumps(arguments).decode()
            block = {**block, "raw_name": block.get("name"), "raw_arguments": raw}
        out.append(block)
    return out


def _row(r: dict[str, Any], source: OutputSource) -> StoredRow:
    demonstration = source == "demonstration"
    return StoredRow(
        kind=r["kind"],
        id=r["id"],
        episode_id=r["episode_id"],
        function_name=r["function_name"],
        variant_name=r["variant_name"],
        created_at=r["created_at"],
        input=r["input"],
        output=demonstration_output(r["kind"], r["demonstration"]) if demonstration else r["output"],
        dispreferred_output=r["output"] if demonstration else None,
        tags=r["tags"],
        inference_params=r["inference_params"],
        processing_time_ms=r["processing_time_ms"],
        ttft_ms=r["ttft_ms"],
        tool_params=r["tool_params"],
        output_schema=r["output_schema"],
        extra_body=r["extra_body"],
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cost=r["cost"],
    )


# A list filtered by a tag first considers only this many of the newest inferences (about 5 ms): enough for any tag on
# at least 0.4% of them to fill a page of 20.
SCAN_BUDGET = 5000
# A rarer tag's matches are read from the tags' GIN index in time windows, starting where the order starts: the first
# window spans WINDOW_GROWTH times the time the budget's inferences took, each next one wide enough for the matches
# still wanted at the density seen so far (WINDOW_GROWTH to WINDOW_GROWTH squared times the range covered), until
# the page is full or the range's last inference is reached; after WINDOWS windows the rest of the range in one. A
# window is planned for its values (a custom plan: only its partitions are planned; a generic plan, not knowing how
# much of a partition a two-sided range holds, may walk the id index through whole days), except the rest of a range
# open at its far end: its generic plan (planned once per connection, pruned at run time) reads the GIN index too,
# and planning its many days each time cost more than reading them (no match at 10M: 44 against 17 ms at best).
WINDOW_GROWTH = 4
WINDOWS = 12
_MATCHES_BY_INDEX = (
    "SELECT set_config('enable_seqscan', 'off', true), set_config('plan_cache_mode', 'force_{}_plan', true)"
)


def _tag_filtered(query: ListQuery) -> bool:
    """Whether a timestamp-ordered query has a tag condition (where a scan budget, then the GIN index, pays off)."""
    if any(o.by != "timestamp" for o in query.order_by) or query.ids is not None:
        return False
    stack = [query.filters] if query.filters is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, TagFilter):
            return True
        if isinstance(node, AndFilter | OrFilter):
            stack.extend(node.children)
        elif isinstance(node, NotFilter):
            stack.append(node.child)
    return bool(query.tags)


async def list_inferences(
    database: Database, query: ListQuery, configured: Mapping[str, Metric] | None = None
) -> list[StoredRow]:
    """The page of inferences `query` asks for, in its order. Raises InvalidRequest for an unknown metric,
    DatabaseUnavailable when PostgreSQL cannot answer."""
    async with database.reading("query") as conn:
        metrics = await resolve_metrics(conn, query, configured or {})
        # One round trip for BEGIN, the settings, the statement and COMMIT (pipeline mode); more only for the
        # second step of a rare tag and for the attempts.
        async with conn.pipeline(), conn.transaction():
            return await _run_list(conn, database, query, metrics)


async def _run_list(
    conn: psycopg.AsyncConnection[Any], database: Database, query: ListQuery, metrics: Mapping[str, Metric]
) -> list[StoredRow]:
    """One list statement (and the attempts) in the caller's transaction."""
    budget = SCAN_BUDGET if _tag_filtered(query) else None
    statement, params = list_statement(query, metrics, scan_budget=budget)
    await conn.execute(QUERY_SETTINGS)
    cur = conn.cursor(row_factory=dict_row)
    await cur.execute(statement, params, prepare=database.prepare)
    found = [_row(r, query.output_source) for r in await cur.fetchall()]
    if budget is not None and len(found) < query.limit:
        # The newest rows held too few matches: a rare tag. Read its matches from the tags' GIN index, window by
        # window, instead of walking the whole history in id order.
        found = await _walk_windows(conn, cur, database, query, metrics, found)
    if query.reverse:
        found.reverse()
    if query.include_model_inferences and found:
        text, attempt_params = attempts_statement([r.id for r in found])
        await cur.execute(text, attempt_params)
        by_inference: dict[UUID, list[dict[str, Any]]] = {}
        for attempt in await cur.fetchall():
            for column in ("error", "raw_request", "raw_response"):  # text as stored (lsd.store.escaping)
                attempt[column] = unescape_optional(attempt[column])
            by_inference.setdefault(attempt["inference_id"], []).append(attempt)
        for row in found:
            row.model_inferences.extend(by_inference.get(row.id, []))
    return found


def _at(ms: int) -> dt.datetime:
    return _EPOCH + ms * _MS


def _window(query: ListQuery, near: int | None, far: int | None) -> ListQuery:
    """`query` narrowed to the ids between `near` and `far` (ms; None: the query's own bound), in its order."""
    since, until = (far, near) if first_id_descending(query) else (near, far)
    narrowed_since = query.since if since is None else _at(since)
    if query.since is not None and narrowed_since is not None:
        narrowed_since = max(query.since, narrowed_since)
    narrowed_until = query.until if until is None else _at(until)
    if query.until is not None and narrowed_until is not None:
        narrowed_until = min(query.until, narrowed_until)
    return dataclasses.replace(query, since=narrowed_since, until=narrowed_until)


async def _walk_windows(
    conn: psycopg.AsyncConnection[Any],
    cur: psycopg.AsyncCursor[dict[str, Any]],
    database: Database,
    query: ListQuery,
    metrics: Mapping[str, Metric],
    found: list[StoredRow],
) -> list[StoredRow]:
    """The page of a query whose scan budget found too few matches, read window by window (WINDOW_GROWTH)."""
    statement, params = edge_statement(query, SCAN_BUDGET)
    await cur.execute(statement, params, prepare=database.prepare)
    ends = await cur.fetchone()
    if ends is None or ends["edge"] is None:
        return found  # the budget covered every inference within the query's bounds: its answer is the whole answer
    first, edge, last = (ends[k].int >> 80 for k in ("first", "edge", "last"))
    sign = -1 if first_id_descending(query) else 1
    open_far_end = (query.since if sign < 0 else query.until) is None
    wanted = query.limit + query.offset
    matches: list[UUID] = []
    near: int | None = None
    width = max(abs(first - edge), 1000) * WINDOW_GROWTH
    plan = ""
    for step in range(WINDOWS):
        reach = first + sign * width
        last_window = step == WINDOWS - 1 or (reach - last) * sign >= 0  # then the rest of the query's range
        far = None if last_window else reach
        if plan != (plan := "generic" if far is None and near is not None and open_far_end else "custom"):
            await conn.execute(_MATCHES_BY_INDEX.format(plan))
        window = dataclasses.replace(_window(query, near, far), limit=wanted - len(matches), offset=0)
        statement, params = match_ids_statement(window, metrics)
        await cur.execute(statement, params, prepare=database.prepare)
        matches.extend(r["id"] for r in await cur.fetchall())
        if len(matches) >= wanted or far is None:
            break
        # The next window: wide enough for the matches still wanted at the density this one showed (half a match
        # when it had none), at least WINDOW_GROWTH times this one's width, at most WINDOW_GROWTH squared.
        covered = abs(reach - first)
        needed = covered * (wanted - len(matches)) / max(len(matches), 0.5)
        width = covered + int(min(max(needed, covered * (WINDOW_GROWTH - 1)), covered * (WINDOW_GROWTH**2 - 1)))
        near = far
    page = matches[query.offset : query.offset + query.limit]
    if not page:
        return []
    # The page's rows by id (the partition key: its days only), with the generic plan of the other statements.
    await conn.execute(QUERY_SETTINGS)
    by_ids = dataclasses.replace(query, ids=tuple(page), limit=len(page), offset=0)
    statement, params = list_statement(by_ids, metrics)
    await cur.execute(statement, params, prepare=database.prepare)
    return [_row(r, query.output_source) for r in await cur.fetchall()]
