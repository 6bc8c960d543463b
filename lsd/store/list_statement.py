"""The list_inferences statement: filters, order, keyset bounds and the bounded plans of docs/querying.md.

Every value is a bound parameter; identifiers come from fixed tables here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg import sql
from psycopg.types.json import Jsonb

from lsd.store.escaping import escape_text
from lsd.store.list_query import (
    ATTEMPT_LOOKBACK,
    AndFilter,
    BooleanMetricFilter,
    DemonstrationFilter,
    Filter,
    ListQuery,
    Metric,
    NotFilter,
    OrFilter,
    Params,
    TagFilter,
    TimeFilter,
    time_condition,
)

# -- building the list statement ---------------------------------------------------------------------------


def id_descending(query: ListQuery) -> bool:
    """Whether ties (and a query without an order) go newest first."""
    keyset = query.keyset
    return keyset[0] == "<" if keyset is not None else not query.reverse


def first_id_descending(query: ListQuery) -> bool:
    """Whether a timestamp-only order starts newest first."""
    for order in query.order_by:
        return (order.direction == "descending") != query.reverse
    return id_descending(query)


_DEMONSTRATION_EXISTS = sql.SQL("EXISTS (SELECT 1 FROM demonstration_feedback df WHERE df.inference_id = i.id)")
# The latest value of a metric for one target, from the table the feedback trigger keeps (0009_history_indexes.sql):
# one primary-key probe per inference considered, so a filter reads about as many rows as the page needs.
# A scalar subquery, not IN/EXISTS, so the planner cannot turn it into a join over every value of the metric.
_LATEST_VALUE = sql.SQL(
    "(SELECT l.value FROM {table} l WHERE l.metric_name = {metric} AND l.target_level = {level} "
    "AND l.target_id = i.{column})"
)


@dataclass(frozen=True, slots=True)
class _MetricOrder:
    """Ordering by an inference-level metric first: the rows with a value in the value index's order, then the
    rows without one in id order (NULLS LAST), each part cut at the window."""

    table: sql.Identifier
    metric: sql.Composable
    level: sql.Composable
    value_direction: sql.SQL
    id_direction: sql.SQL
    null_value: sql.SQL


class _Builder:
    """Builds one list statement: its parameters and the latest-value lookups of each metric it names."""

    def __init__(self, query: ListQuery, metrics: Mapping[str, Metric]) -> None:
        self.query = query
        self.metrics = metrics
        self.params = Params()
        self._names: dict[str, tuple[sql.Composable, sql.Composable]] = {}

    def latest(self, metric_name: str) -> tuple[sql.Identifier, sql.Composable, sql.Composable, sql.Identifier]:
        """The latest-value table of `metric_name`, its name and level parameters, and the column of `i` its targets
        are."""
        metric = self.metrics[metric_name]
        if metric_name not in self._names:
            self._names[metric_name] = (self.params(metric.name), self.params(metric.level))
        name, level = self._names[metric_name]
        column = sql.Identifier("episode_id" if metric.level == "episode" else "id")
        return sql.Identifier(f"{metric.type}_metric_latest"), name, level, column

    def value_of(self, metric_name: str) -> sql.Composable:
        table, name, level, column = self.latest(metric_name)
        return _LATEST_VALUE.format(table=table, metric=name, level=level, column=column)

    def filter(self, node: Filter) -> sql.Composable:
        """A filter tree over `i`. A metric without feedback matches no comparison, so NOT is the complement."""
        if isinstance(node, AndFilter | OrFilter):
            if not node.children:
                return sql.SQL("TRUE" if isinstance(node, AndFilter) else "FALSE")
            joiner = sql.SQL(" AND " if isinstance(node, AndFilter) else " OR ")
            return sql.SQL("({})").format(joiner.join(self.filter(c) for c in node.children))
        if isinstance(node, NotFilter):
            return sql.SQL("NOT {}").format(self.filter(node.child))
        if isinstance(node, TagFilter):
            if node.operator == "=":
                return sql.SQL("i.tags @> {}").format(self.params(Jsonb({node.key: node.value})))
            # As stored (lsd.store.escaping): the jsonb above is escaped by its dumper, these text values here.
            key, value = self.params(escape_text(node.key)), self.params(escape_text(node.value))
            return sql.SQL("(i.tags ? {0} AND i.tags ->> {0} <> {1})").format(key, value)
        if isinstance(node, TimeFilter):
            return time_condition(node.operator, node.time, sql.SQL("i.id"), self.params)
        if isinstance(node, DemonstrationFilter):
            return _DEMONSTRATION_EXISTS if node.has_demonstration else sql.SQL("NOT {}").format(_DEMONSTRATION_EXISTS)
        op = "=" if isinstance(node, BooleanMetricFilter) else node.operator
        return sql.SQL("coalesce({} {} {}, false)").format(
            self.value_of(node.metric_name), sql.SQL("<>" if op == "!=" else op), self.params(node.value)
        )

    def id_bounds(self, column: sql.Composable) -> list[sql.Composable]:
        """The query's bounds on the inference id (since, until, the keyset) as conditions on `column`."""
        query, params = self.query, self.params
        bounds: list[sql.Composable] = []
        if query.since is not None:
            bounds.append(time_condition(">=", query.since, column, params))
        if query.until is not None:
            bounds.append(time_condition("<", query.until, column, params))
        if query.keyset is not None:
            bounds.append(sql.SQL("{} {} {}").format(column, sql.SQL(query.keyset[0]), params(query.keyset[1])))
        return bounds

    def conditions(self) -> list[sql.Composable]:
        query, params = self.query, self.params
        conds: list[sql.Composable] = []
        for column, value in (
            ("function_name", query.function_name),
            ("variant_name", query.variant_name),
            ("episode_id", query.episode_id),
        ):
            if value is not None:
                conds.append(sql.SQL("i.{} = {}").format(sql.Identifier(column), params(value)))
        if query.ids is not None:
            conds.append(sql.SQL("i.id = ANY({})").format(params(list(query.ids))))
        if query.tags:
            conds.append(sql.SQL("i.tags @> {}").format(params(Jsonb(query.tags))))
        conds.extend(self.id_bounds(sql.SQL("i.id")))
        if query.model_name is not None:
            conds.append(
                # Attempt ids are made after their inference's: the bound prunes the older days' partitions
                # at run time, for each inference considered, instead of probing every day's index.
                sql.SQL(
                    "EXISTS (SELECT 1 FROM model_inferences m WHERE m.inference_id = i.id "
                    "AND m.id >= lsd_uuid7_floor(lsd_uuid7_time(i.id) - {}) "
                    "AND m.model_name = {} AND m.status = 'ok')"
                ).format(params(ATTEMPT_LOOKBACK), params(query.model_name))
            )
        if query.output_source == "demonstration":
            conds.append(_DEMONSTRATION_EXISTS)
        if query.filters is not None:
            conds.append(self.filter(query.filters))
        return conds

    def budget(self, kind: str, budget: int) -> sql.Composable:
        descending = first_id_descending(self.query)
        bounds = self.id_bounds(sql.SQL("b.id"))
        return _BUDGET.format(
            op=sql.SQL(">=" if descending else "<="),
            table=sql.Identifier(f"{kind}_inferences"),
            bounds=sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("TRUE"),
            direction=sql.SQL("DESC" if descending else "ASC"),
            budget=self.params(budget),
            open_end=sql.Literal(str(UUID(int=0 if descending else (1 << 128) - 1))),
        )

    def metric_order(self) -> _MetricOrder | None:
        """The bounded plan's parameters when the order is one inference-level metric (then id as always)."""
        if len(self.query.order_by) != 1 or self.query.order_by[0].by != "metric":
            return None
        order = self.query.order_by[0]
        assert order.metric_name is not None
        metric = self.metrics[order.metric_name]
        if metric.level != "inference":
            return None  # an episode's value orders all its inferences: no per-inference value index to walk
        table, name, level, _ = self.latest(order.metric_name)
        descending = (order.direction == "descending") != self.query.reverse
        return _MetricOrder(
            table=table,
            metric=name,
            level=level,
            value_direction=sql.SQL("DESC" if descending else "ASC"),
            id_direction=sql.SQL("DESC" if id_descending(self.query) else "ASC"),
            null_value=sql.SQL("NULL::boolean" if metric.type == "boolean" else "NULL::double precision"),
        )

    def order(self) -> tuple[sql.Composable, sql.Composable]:
        """Sort columns (`, (value) AS sN`) and the ORDER BY over them; id breaks ties."""
        columns: list[sql.Composable] = []
        terms: list[sql.Composable] = []
        for n, order in enumerate(self.query.order_by):
            descending = (order.direction == "descending") != self.query.reverse
            if order.by == "timestamp":
                # Timestamp order is id order; kept as plain `id` so an index scan on id can produce it.
                terms.append(sql.SQL("id DESC" if descending else "id ASC"))
                continue
            assert order.metric_name is not None
            name = sql.Identifier(f"s{n}")
            columns.append(sql.SQL(", {} AS {}").format(self.value_of(order.metric_name), name))
            terms.append(sql.SQL("{} {} NULLS LAST").format(name, sql.SQL("DESC" if descending else "ASC")))
        terms.append(sql.SQL("id DESC" if id_descending(self.query) else "id ASC"))
        return sql.SQL("").join(columns), sql.SQL(", ").join(terms)


_COLUMNS = sql.SQL(
    "{kind} AS kind, i.id, i.episode_id, i.function_name, i.variant_name, i.created_at, "
    "i.input AS input_stored, i.input_refs, i.output, "
    "i.tags, i.inference_params, i.processing_time_ms, i.ttft_ms, {tool_params} AS tool_params, "
    "{output_schema} AS output_schema, i.input_tokens, i.output_tokens, i.cost"
)
_BRANCH = sql.SQL("""
    (SELECT {columns}{sort_columns}
     FROM {table} i WHERE {where} ORDER BY {order} LIMIT {window})""")
# A scan budget: only the `budget` newest (or oldest) inferences within the query's id bounds are considered.
_BUDGET = sql.SQL(
    "i.id {op} coalesce((SELECT b.id FROM {table} b WHERE {bounds} ORDER BY b.id {direction} OFFSET {budget} LIMIT 1), "
    "{open_end}::uuid)"
)
# Ordered by an inference-level metric: walk the metric's value index, looking each target up in both inference
# tables by id (pruned to one partition at run time); only when that finds fewer than the window, the inferences
# without a value, in id order (the one-time filter skips them otherwise).
_VALUED = sql.SQL("""
valued AS MATERIALIZED (
    SELECT x.*, v.value AS s0
    FROM {latest} v CROSS JOIN LATERAL ({lookups}) x
    WHERE v.metric_name = {metric} AND v.target_level = {level}{target_bounds}
    ORDER BY v.value {value_direction}, v.target_id {id_direction} LIMIT {window})""")
_LOOKUP = sql.SQL("(SELECT {columns} FROM {table} i WHERE i.id = v.target_id AND {where})")
_UNVALUED_BRANCH = sql.SQL("""
    (SELECT {columns}, {null_value} AS s0
     FROM {table} i
     WHERE {where} AND (SELECT true FROM {latest} v WHERE v.metric_name = {metric} AND v.target_level = {level}
                        AND v.target_id = i.id) IS NULL
       AND (SELECT count(*) FROM valued) < {window}
     ORDER BY i.id {id_direction} LIMIT {window})""")

_OUTER = sql.SQL("""
{with_ctes}SELECT p.*,
       lsd_input(p.input_stored, p.input_refs, p.id) AS input,
       CASE p.kind
           WHEN 'chat' THEN (SELECT d.extra_body FROM chat_inference_data d WHERE d.inference_id = p.id)
           ELSE (SELECT d.extra_body FROM json_inference_data d WHERE d.inference_id = p.id)
       END AS extra_body,
       {demonstration} AS demonstration
FROM (SELECT * FROM ({branches}) u ORDER BY {order} LIMIT {limit} OFFSET {offset}) p
ORDER BY {order}
""")
_LATEST_DEMONSTRATION = sql.SQL(
    "(SELECT df.value FROM demonstration_feedback df WHERE df.inference_id = p.id ORDER BY df.id DESC LIMIT 1)"
)


def _columns(kind: str) -> sql.Composable:
    return _COLUMNS.format(
        kind=sql.Literal(kind),
        tool_params=sql.SQL("i.tool_params" if kind == "chat" else "NULL::jsonb"),
        output_schema=sql.SQL("i.output_schema" if kind == "json" else "NULL::jsonb"),
    )


def list_statement(
    query: ListQuery, metrics: Mapping[str, Metric], *, scan_budget: int | None = None
) -> tuple[sql.Composed, dict[str, Any]]:
    """The list query over chat and json inferences, with its named parameters. Timestamp order only: `scan_budget`
    considers only that many inferences of each table from the start of the order, within the query's bounds (the
    answer is the query's own when it fills the page)."""
    builder = _Builder(query, metrics)
    metric_order = builder.metric_order()
    sort_columns, order = builder.order()
    conds = builder.conditions()
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    window = builder.params(query.limit + query.offset)
    kinds = ("chat", "json")
    ctes: list[sql.Composable] = []
    branches: list[sql.Composable]
    if metric_order is None:
        branches = [
            _BRANCH.format(
                columns=_columns(kind),
                sort_columns=sort_columns,
                table=sql.Identifier(f"{kind}_inferences"),
                where=where
                if scan_budget is None
                else sql.SQL("{} AND {}").format(where, builder.budget(kind, scan_budget)),
                order=order,
                window=window,
            )
            for kind in kinds
        ]
    else:
        lookups = sql.SQL(" UNION ALL ").join(
            _LOOKUP.format(columns=_columns(kind), table=sql.Identifier(f"{kind}_inferences"), where=where)
            for kind in kinds
        )
        bounds = builder.id_bounds(sql.SQL("v.target_id"))
        ctes.append(
            _VALUED.format(
                latest=metric_order.table,
                lookups=lookups,
                metric=metric_order.metric,
                level=metric_order.level,
                target_bounds=sql.SQL("").join(sql.SQL(" AND {}").format(b) for b in bounds),
                value_direction=metric_order.value_direction,
                id_direction=metric_order.id_direction,
                window=window,
            )
        )
        branches = [sql.SQL("(SELECT * FROM valued)")]
        branches.extend(
            _UNVALUED_BRANCH.format(
                columns=_columns(kind),
                table=sql.Identifier(f"{kind}_inferences"),
                where=where,
                window=window,
                latest=metric_order.table,
                metric=metric_order.metric,
                level=metric_order.level,
                id_direction=metric_order.id_direction,
                null_value=metric_order.null_value,
            )
            for kind in kinds
        )
    statement = _OUTER.format(
        with_ctes=sql.SQL("WITH {}\n").format(sql.SQL(", ").join(ctes)) if ctes else sql.SQL(""),
        branches=sql.SQL(" UNION ALL ").join(branches),
        order=order,
        limit=builder.params(query.limit),
        offset=builder.params(query.offset),
        demonstration=_LATEST_DEMONSTRATION if query.output_source == "demonstration" else sql.SQL("NULL::jsonb"),
    )
    return statement, builder.params.values


_EDGE = sql.SQL("SELECT {pick}({firsts}) AS first, {pick}({edges}) AS edge, {other}({lasts}) AS last")
# Each table on its own: an index scan of its id order (a UNION ALL of the two under one ORDER BY was sorted whole).
_EDGE_OF = sql.SQL("(SELECT b.id FROM {table} b WHERE {bounds} ORDER BY b.id {direction} OFFSET {skip} LIMIT 1)")


def edge_statement(query: ListQuery, budget: int) -> tuple[sql.Composed, dict[str, Any]]:
    """The first inference id within the query's id bounds (since, until, keyset) in the order it starts with,
    about the id `budget` inferences further (the nearer of the two tables'; NULL when neither has that many): the
    range a scan budget covered, and the last id in that order."""
    builder = _Builder(query, {})
    descending = first_id_descending(query)

    def of(skip: int, forward: bool = True) -> sql.Composable:
        parts = []
        for kind in ("chat", "json"):
            bounds = builder.id_bounds(sql.SQL("b.id"))
            parts.append(
                _EDGE_OF.format(
                    table=sql.Identifier(f"{kind}_inferences"),
                    bounds=sql.SQL(" AND ").join(bounds) if bounds else sql.SQL("TRUE"),
                    direction=sql.SQL("DESC" if descending == forward else "ASC"),
                    skip=builder.params(skip),
                )
            )
        return sql.SQL(", ").join(parts)

    statement = _EDGE.format(
        pick=sql.SQL("greatest" if descending else "least"),
        other=sql.SQL("least" if descending else "greatest"),
        firsts=of(0),
        edges=of(budget),
        lasts=of(0, forward=False),
    )
    return statement, builder.params.values


_MATCH_IDS = sql.SQL("(SELECT i.id FROM {table} i WHERE {where} ORDER BY i.id::text {direction} LIMIT {window})")


def match_ids_statement(query: ListQuery, metrics: Mapping[str, Metric]) -> tuple[sql.Composed, dict[str, Any]]:
    """The ids of a timestamp-ordered query's first `limit` matches, sorted by the id's text (a canonical UUID's text
    sorts as the UUID does), so that no index scan can produce the order and the plan reads the matches by the
    filters' own indexes (the tags' GIN index). Only the inference tables: the page's columns come after."""
    builder = _Builder(query, metrics)
    conds = builder.conditions()
    where = sql.SQL(" AND ").join(conds) if conds else sql.SQL("TRUE")
    window = builder.params(query.limit)
    descending = first_id_descending(query)
    branches = sql.SQL(" UNION ALL ").join(
        _MATCH_IDS.format(
            table=sql.Identifier(f"{kind}_inferences"),
            where=where,
            direction=sql.SQL("DESC" if descending else "ASC"),
            window=window,
        )
        for kind in ("chat", "json")
    )
    statement = sql.SQL("SELECT u.id FROM ({}) u ORDER BY u.id {} LIMIT {}").format(
        branches, sql.SQL("DESC" if descending else "ASC"), window
    )
    return statement, builder.params.values
