"""Datapoint rows (chat_datapoints, json_datapoints; the `datapoints` view over both): insert, stale, rename, list.

A datapoint is never edited in place: `replace` stales a live row and inserts its successor in one transaction.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal
from uuid import UUID

from psycopg import sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from lsd.store.database import Database
from lsd.store.queries import AndFilter, Filter, NotFilter, OrFilter, TagFilter, TimeFilter

Json = Any
DatapointType = Literal["chat", "json"]


@dataclass(frozen=True, slots=True)
class DatapointRow:
    """One datapoint as stored; `type` says its table (chat rows have no output_schema, json rows no tool_params)."""

    type: DatapointType
    id: UUID
    dataset_name: str
    function_name: str
    name: str | None
    episode_id: UUID | None
    input: Json
    output: Json | None
    tool_params: Json | None
    output_schema: Json | None
    tags: Json
    source_inference_id: UUID | None
    is_custom: bool
    is_deleted: bool
    staled_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime

    def successor(self, new_id: UUID, now: dt.datetime, **changes: Any) -> DatapointRow:
        """The row that replaces this one: a new id made now, edited (`is_custom`)."""
        return replace(self, id=new_id, is_custom=True, staled_at=None, created_at=now, updated_at=now, **changes)


@dataclass(frozen=True, slots=True)
class DatapointQuery:
    """Live datapoints of one dataset; `condition` over tags and `updated_at` (the inference filter's tag, time and
    logical nodes, checked by the request parser); id order (creation order)."""

    dataset_name: str
    function_name: str | None = None
    condition: Filter | None = None
    descending: bool = True
    limit: int | None = 20  # None: all of them (export, evaluation)
    offset: int = 0
    type: DatapointType | None = None


class StaleDatapoint(Exception):
    """The datapoint to replace is unknown, stale, or in another dataset; nothing was written."""

    def __init__(self, datapoint_id: UUID) -> None:
        super().__init__(str(datapoint_id))
        self.datapoint_id = datapoint_id


_TABLES: dict[str, str] = {"chat": "chat_datapoints", "json": "json_datapoints"}
_ONLY_IN = {"chat": "output_schema", "json": "tool_params"}  # the view's column the other table lacks
_JSON_COLUMNS = frozenset({"input", "output", "tool_params", "output_schema", "tags"})
_COLUMNS = [f.name for f in fields(DatapointRow)]
_SELECT = sql.SQL("SELECT {} FROM datapoints").format(sql.SQL(", ").join(map(sql.Identifier, _COLUMNS)))


def _insert_statement(kind: str) -> tuple[sql.Composed, list[str]]:
    names = [n for n in _COLUMNS if n not in ("type", _ONLY_IN[kind])]
    statement = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(_TABLES[kind]),
        sql.SQL(", ").join(map(sql.Identifier, names)),
        sql.SQL(", ").join(sql.Placeholder() * len(names)),
    )
    return statement, names


_INSERTS = {kind: _insert_statement(kind) for kind in _TABLES}


def _params(row: DatapointRow, names: Sequence[str]) -> list[Any]:
    values = [getattr(row, n) for n in names]
    return [Jsonb(v) if n in _JSON_COLUMNS and v is not None else v for n, v in zip(names, values, strict=True)]


async def insert(database: Database, rows: Sequence[DatapointRow]) -> None:
    """New datapoints, all or none."""
    if not rows:
        return
    async with database.connection("datasets") as conn, conn.transaction(), conn.cursor() as cur:
        for kind in _TABLES:
            statement, names = _INSERTS[kind]
            batch = [_params(r, names) for r in rows if r.type == kind]
            if batch:
                await cur.executemany(statement, batch)


async def replace_rows(
    database: Database, pairs: Sequence[tuple[DatapointRow, DatapointRow]], now: dt.datetime
) -> None:
    """Stale each old row and insert its successor, all or none. Raises StaleDatapoint when an old row is no longer
    live (a concurrent update or deletion got there first)."""
    async with database.connection("datasets") as conn, conn.transaction(), conn.cursor() as cur:
        for old, new in pairs:
            await cur.execute(
                sql.SQL(
                    "UPDATE {} SET staled_at = %s, updated_at = %s "
                    "WHERE id = %s AND dataset_name = %s AND staled_at IS NULL"
                ).format(sql.Identifier(_TABLES[old.type])),
                (now, now, old.id, old.dataset_name),
            )
            if cur.rowcount != 1:
                raise StaleDatapoint(old.id)
            statement, names = _INSERTS[new.type]
            await cur.execute(statement, _params(new, names))


async def rename(
    database: Database, dataset_name: str, names: Sequence[tuple[UUID, str | None]], now: dt.datetime
) -> None:
    """Set the `name` of live datapoints in place (metadata is not content: the id stays), all or none. Raises
    StaleDatapoint for an id that is not a live datapoint of the dataset."""
    async with database.connection("datasets") as conn, conn.transaction(), conn.cursor() as cur:
        for datapoint_id, name in names:
            updated = 0
            for table in _TABLES.values():
                await cur.execute(
                    sql.SQL(
                        "UPDATE {} SET name = %s, updated_at = %s "
                        "WHERE id = %s AND dataset_name = %s AND staled_at IS NULL"
                    ).format(sql.Identifier(table)),
                    (name, now, datapoint_id, dataset_name),
                )
                updated += cur.rowcount
            if updated != 1:
                raise StaleDatapoint(datapoint_id)


async def delete(database: Database, dataset_name: str, ids: Sequence[UUID] | None, now: dt.datetime) -> int:
    """Stale (and mark deleted) the given live datapoints of the dataset, or all of them when `ids` is None; how
    many were."""
    count = 0
    async with database.connection("datasets") as conn, conn.transaction(), conn.cursor() as cur:
        for table in _TABLES.values():
            await cur.execute(
                sql.SQL(
                    "UPDATE {} SET is_deleted = true, staled_at = %(now)s, updated_at = %(now)s "
                    "WHERE dataset_name = %(dataset)s AND staled_at IS NULL "
                    "AND (%(all)s OR id = ANY(%(ids)s))"
                ).format(sql.Identifier(table)),
                {"now": now, "dataset": dataset_name, "all": ids is None, "ids": list(ids or ())},
            )
            count += cur.rowcount
    return count


@dataclass
class _Where:
    parts: list[sql.Composable] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def bind(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)


_OPERATORS: dict[str, sql.SQL] = {op: sql.SQL(op) for op in ("<", "<=", "=", ">", ">=", "!=")}


def _condition(node: Filter, where: _Where) -> sql.Composable:
    if isinstance(node, TagFilter):
        # != matches rows that lack the key, as TensorZero does for a tag that is not equal
        text = "(tags ->> {key}) IS NOT DISTINCT FROM {value}"
        clause = sql.SQL(text).format(key=where.bind(node.key), value=where.bind(node.value))
        return clause if node.operator == "=" else sql.SQL("NOT ({})").format(clause)
    if isinstance(node, TimeFilter):
        return sql.SQL("updated_at {} {}").format(_OPERATORS[node.operator], where.bind(node.time))
    if isinstance(node, NotFilter):
        return sql.SQL("NOT ({})").format(_condition(node.child, where))
    if isinstance(node, AndFilter | OrFilter):
        joiner, empty = (" AND ", "true") if isinstance(node, AndFilter) else (" OR ", "false")
        if not node.children:
            return sql.SQL(empty)
        return sql.SQL("({})").format(sql.SQL(joiner).join(_condition(c, where) for c in node.children))
    raise TypeError(f"datapoints are not filtered by {type(node).__name__} (the request parser refuses it)")


def list_statement(query: DatapointQuery) -> tuple[sql.Composed, dict[str, Any]]:
    where = _Where()
    where.parts.append(sql.SQL("dataset_name = {}").format(where.bind(query.dataset_name)))
    where.parts.append(sql.SQL("staled_at IS NULL"))
    if query.function_name is not None:
        where.parts.append(sql.SQL("function_name = {}").format(where.bind(query.function_name)))
    if query.type is not None:
        where.parts.append(sql.SQL("type = {}").format(where.bind(query.type)))
    if query.condition is not None:
        where.parts.append(_condition(query.condition, where))
    statement = sql.SQL("{} WHERE {} ORDER BY id {}").format(
        _SELECT, sql.SQL(" AND ").join(where.parts), sql.SQL("DESC" if query.descending else "ASC")
    )
    if query.limit is not None:
        statement = sql.SQL("{} LIMIT {} OFFSET {}").format(
            statement, where.bind(query.limit), where.bind(query.offset)
        )
    return statement, where.params


async def list_rows(database: Database, query: DatapointQuery) -> list[DatapointRow]:
    """The page of live datapoints `query` asks for."""
    statement, params = list_statement(query)
    async with database.reading("datasets") as conn, conn.cursor(row_factory=class_row(DatapointRow)) as cur:
        await cur.execute(statement, params)
        return await cur.fetchall()


async def get_rows(
    database: Database, ids: Sequence[UUID], *, dataset_name: str | None = None, primary: bool = False
) -> list[DatapointRow]:
    """The datapoints with these ids, stale ones included (an evaluation may name one); unknown ids are left out.
    `primary=True` reads the primary (a write that checks what it is about to replace)."""
    statement = sql.SQL(
        "{} WHERE id = ANY(%(ids)s) AND (%(dataset)s::text IS NULL OR dataset_name = %(dataset)s)"
    ).format(_SELECT)
    door = database.connection if primary else database.reading
    async with door("datasets") as conn, conn.cursor(row_factory=class_row(DatapointRow)) as cur:
        await cur.execute(statement, {"ids": list(ids), "dataset": dataset_name})
        return await cur.fetchall()
