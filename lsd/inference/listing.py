"""list_inferences / get_inferences: parse the TensorZero-shaped bodies, query the store, shape the answer.

Every request error is an InvalidRequest naming its field path (`filters.children[1].metric_name`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import math
from collections.abc import Mapping
from typing import Any, Literal
from uuid import UUID

from lsd.config.model import MetricConfig
from lsd.errors import InvalidRequest
from lsd.immutable import immutable
from lsd.inference.input_request import json_type
from lsd.store import queries
from lsd.store.database import Database
from lsd.store.queries import (
    AndFilter,
    BooleanMetricFilter,
    DemonstrationFilter,
    Filter,
    FloatMetricFilter,
    ListQuery,
    Metric,
    NotFilter,
    OrderBy,
    OrFilter,
    StoredRow,
    TagFilter,
    TimeFilter,
)

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
MAX_IDS = 1000
# OFFSET makes PostgreSQL walk and discard every skipped row: deeper pages are for cursors (before/after/cursor).
MAX_OFFSET = 1_000_000
# Ids (UUIDv7) carry milliseconds since 1970: no inference is older, so an earlier bound is the epoch itself
# (`since` 1900 matches everything, `until` 1900 nothing), not a negative number that wraps in the id.
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
COMPARISONS = ("<", "<=", "=", ">", ">=", "!=")

_LIST_FIELDS = frozenset(
    {
        "function_name",
        "variant_name",
        "episode_id",
        "output_source",
        "limit",
        "offset",
        "before",
        "after",
        "filters",
        "filter",
        "order_by",
        "search_query_experimental",
        # LSD's own
        "model_name",
        "tags",
        "since",
        "until",
        "cursor",
        "include_model_inferences",
        "include_usage",
    }
)
_GET_FIELDS = frozenset({"ids", "function_name", "output_source", "include_model_inferences", "include_usage"})
_FILTER_FIELDS = {
    "and": {"children"},
    "or": {"children"},
    "not": {"child"},
    "tag": {"key", "value", "comparison_operator"},
    "boolean_metric": {"metric_name", "value"},
    "float_metric": {"metric_name", "value", "comparison_operator"},
    "time": {"time", "comparison_operator"},
    "demonstration_feedback": {"has_demonstration"},
}
_CURSOR_VERSION = b"lsd1"


# -- parsing -----------------------------------------------------------------------------------------------


def _object(value: Any, path: str, allowed: set[str] | frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, f"expected an object, got {json_type(value)}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidRequest.at(f"{path}.{unknown[0]}" if path != "body" else unknown[0], "unknown field")
    return value


def _str(body: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise InvalidRequest.at(path, "missing required field")
        return None
    if not isinstance(value, str):
        raise InvalidRequest.at(path, f"expected a string, got {json_type(value)}")
    return value


def _bool(body: Mapping[str, Any], key: str, path: str, *, required: bool = False) -> bool:
    value = body.get(key)
    if value is None and not required:
        return False
    if not isinstance(value, bool):
        raise InvalidRequest.at(path, f"expected a boolean, got {json_type(value)}")
    return value


def _int(body: Mapping[str, Any], key: str, default: int, maximum: int | None = None) -> int:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest.at(key, f"expected a non-negative integer, got {json_type(value)}")
    if value < 0:
        raise InvalidRequest.at(key, "must be >= 0")
    if maximum is not None and value > maximum:
        raise InvalidRequest.at(key, f"must be at most {maximum}, got {value}")
    return value


def _uuid(value: Any, path: str) -> UUID:
    if not isinstance(value, str):
        raise InvalidRequest.at(path, f"expected a UUID string, got {json_type(value)}")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidRequest.at(path, f"invalid UUID {value!r}") from None


def _time(value: Any, path: str) -> dt.datetime:
    if not isinstance(value, str):
        raise InvalidRequest.at(path, f"expected an RFC 3339 timestamp, got {json_type(value)}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest.at(path, f"invalid RFC 3339 timestamp {value!r}") from None
    if parsed.tzinfo is None:
        raise InvalidRequest.at(path, f"timestamp {value!r} needs a time zone (e.g. 'Z')")
    return max(parsed, EPOCH)


def _choice(body: Mapping[str, Any], key: str, path: str, choices: tuple[str, ...], default: str | None) -> str:
    value = body.get(key)
    if value is None:
        value = default
    if value not in choices:
        if value is None:
            raise InvalidRequest.at(path, "missing required field")
        raise InvalidRequest.at(path, f"must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return str(value)


def _output_source(body: Mapping[str, Any]) -> queries.OutputSource:
    source = _choice(body, "output_source", "output_source", ("inference", "demonstration", "none"), "inference")
    return source  # type: ignore[return-value]


def parse_filter(value: Any, path: str) -> Filter:
    if not isinstance(value, dict):
        raise InvalidRequest.at(path, f"expected an object, got {json_type(value)}")
    kind = _choice(value, "type", f"{path}.type", tuple(_FILTER_FIELDS), None)
    node = _object(value, path, _FILTER_FIELDS[kind] | {"type"})
    if kind in ("and", "or"):
        children = node.get("children")
        if not isinstance(children, list):
            raise InvalidRequest.at(f"{path}.children", f"expected an array, got {json_type(children)}")
        parsed = tuple(parse_filter(c, f"{path}.children[{i}]") for i, c in enumerate(children))
        return AndFilter(parsed) if kind == "and" else OrFilter(parsed)
    if kind == "not":
        return NotFilter(parse_filter(node.get("child"), f"{path}.child"))
    if kind == "tag":
        op = _choice(node, "comparison_operator", f"{path}.comparison_operator", ("=", "!="), None)
        key = _str(node, "key", f"{path}.key", required=True)
        tag_value = _str(node, "value", f"{path}.value", required=True)
        assert key is not None and tag_value is not None
        return TagFilter(key, tag_value, "=" if op == "=" else "!=")
    if kind == "boolean_metric":
        name = _str(node, "metric_name", f"{path}.metric_name", required=True)
        assert name is not None
        return BooleanMetricFilter(name, _bool(node, "value", f"{path}.value", required=True), f"{path}.metric_name")
    if kind == "float_metric":
        name = _str(node, "metric_name", f"{path}.metric_name", required=True)
        assert name is not None
        number = node.get("value")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise InvalidRequest.at(f"{path}.value", f"expected a finite number, got {json_type(number)}")
        op = _choice(node, "comparison_operator", f"{path}.comparison_operator", COMPARISONS, None)
        return FloatMetricFilter(name, float(number), op, f"{path}.metric_name")  # type: ignore[arg-type]
    if kind == "time":
        op = _choice(node, "comparison_operator", f"{path}.comparison_operator", COMPARISONS, None)
        return TimeFilter(_time(node.get("time"), f"{path}.time"), op)  # type: ignore[arg-type]
    return DemonstrationFilter(_bool(node, "has_demonstration", f"{path}.has_demonstration", required=True))


def _order_by(value: Any) -> tuple[OrderBy, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRequest.at("order_by", f"expected an array, got {json_type(value)}")
    terms = []
    for i, item in enumerate(value):
        path = f"order_by[{i}]"
        node = _object(item, path, {"by", "name", "direction"})
        by = _choice(node, "by", f"{path}.by", ("timestamp", "metric", "search_relevance"), None)
        if by == "search_relevance":
            raise InvalidRequest.at(f"{path}.by", "search_relevance ordering is not supported")
        direction = _choice(node, "direction", f"{path}.direction", ("ascending", "descending"), None)
        name = _str(node, "name", f"{path}.name", required=by == "metric")
        terms.append(OrderBy(by, direction, name if by == "metric" else None, f"{path}.name"))  # type: ignore[arg-type]
    return tuple(terms)


def encode_cursor(op: Literal["<", ">"], id: UUID) -> str:
    raw = _CURSOR_VERSION + op.encode() + id.bytes
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: Any) -> tuple[Literal["<", ">"], UUID]:
    if not isinstance(value, str):
        raise InvalidRequest.at("cursor", f"expected a cursor string, got {json_type(value)}")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 21 or not raw.startswith(_CURSOR_VERSION) or raw[4:5] not in (b"<", b">"):
        raise InvalidRequest.at("cursor", "not a cursor returned by list_inferences")
    return ("<" if raw[4:5] == b"<" else ">"), UUID(bytes=raw[5:])


def _timestamp_only(order_by: tuple[OrderBy, ...]) -> bool:
    return all(o.by == "timestamp" for o in order_by)


def parse_list_request(body: Any) -> ListQuery:
    """A list_inferences body as a ListQuery; raises InvalidRequest naming the field."""
    body = _object(body, "body", _LIST_FIELDS)
    if body.get("search_query_experimental") is not None:
        raise InvalidRequest.at("search_query_experimental", "not supported by LSD")
    filters_key = "filters" if body.get("filters") is not None else "filter"
    filters = parse_filter(body[filters_key], filters_key) if body.get(filters_key) is not None else None
    order_by = _order_by(body.get("order_by"))
    before = _uuid(body["before"], "before") if body.get("before") is not None else None
    after = _uuid(body["after"], "after") if body.get("after") is not None else None
    cursor = decode_cursor(body["cursor"]) if body.get("cursor") is not None else None
    given = [k for k in ("before", "after", "cursor") if body.get(k) is not None]
    if len(given) > 1:
        raise InvalidRequest.at(given[1], f"cannot be combined with {given[0]}")
    if given and body.get("offset") is not None:
        raise InvalidRequest.at("offset", f"cannot be combined with {given[0]} (cursor pagination)")
    keyset: tuple[Literal["<", ">"], UUID] | None = None
    if before is not None:
        keyset = ("<", before)
    elif after is not None:
        keyset = (">", after)
    elif cursor is not None:
        if not _timestamp_only(order_by):
            raise InvalidRequest.at("cursor", "cursors page through timestamp order only")
        descending = not order_by or order_by[0].direction == "descending"
        if (cursor[0] == "<") != descending:
            raise InvalidRequest.at("cursor", "this cursor was made for the opposite order_by direction")
        keyset = cursor
    since = _time(body["since"], "since") if body.get("since") is not None else None
    until = _time(body["until"], "until") if body.get("until") is not None else None
    episode_id = _uuid(body["episode_id"], "episode_id") if body.get("episode_id") is not None else None
    tags = body.get("tags")
    if tags is not None and (not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values())):
        raise InvalidRequest.at("tags", "expected an object of strings")
    return ListQuery(
        function_name=_str(body, "function_name", "function_name"),
        variant_name=_str(body, "variant_name", "variant_name"),
        episode_id=episode_id,
        model_name=_str(body, "model_name", "model_name"),
        tags=dict(tags or {}),
        since=since,
        until=until,
        output_source=_output_source(body),
        filters=filters,
        order_by=order_by,
        limit=_int(body, "limit", DEFAULT_LIMIT, MAX_LIMIT) or DEFAULT_LIMIT,  # 0 means the default, as TensorZero
        offset=_int(body, "offset", 0, MAX_OFFSET),
        keyset=keyset,
        reverse=after is not None,
        include_model_inferences=_bool(body, "include_model_inferences", "include_model_inferences"),
        include_usage=_bool(body, "include_usage", "include_usage"),
    )


def parse_get_request(body: Any) -> ListQuery:
    """A get_inferences body as a ListQuery over its ids; raises InvalidRequest naming the field."""
    body = _object(body, "body", _GET_FIELDS)
    raw_ids = body.get("ids")
    if not isinstance(raw_ids, list):
        raise InvalidRequest.at(
            "ids",
            "missing required field" if raw_ids is None else f"expected an array of UUIDs, got {json_type(raw_ids)}",
        )
    if len(raw_ids) > MAX_IDS:
        raise InvalidRequest.at("ids", f"at most {MAX_IDS} ids per request, got {len(raw_ids)}")
    ids = tuple(dict.fromkeys(_uuid(v, f"ids[{i}]") for i, v in enumerate(raw_ids)))
    return ListQuery(
        ids=ids,
        function_name=_str(body, "function_name", "function_name"),
        output_source=_output_source(body),
        limit=len(ids),
        include_model_inferences=_bool(body, "include_model_inferences", "include_model_inferences"),
        include_usage=_bool(body, "include_usage", "include_usage"),
    )


# -- the answer --------------------------------------------------------------------------------------------


def _configured(metrics: Mapping[str, MetricConfig]) -> dict[str, Metric]:
    return {name: Metric(name, m.type, m.level) for name, m in metrics.items()}


@immutable
class InferencePage:
    """What a list_inferences (`paged`, with its `next_cursor`) or get_inferences body found."""

    rows: tuple[StoredRow, ...]
    include_model_inferences: bool
    paged: bool
    next_cursor: str | None = None
    include_usage: bool = False


async def list_inferences(
    database: Database, body: Any, metrics: Mapping[str, MetricConfig] | None = None
) -> InferencePage:
    """The page for a list_inferences body; `metrics` are the configured ones."""
    query = parse_list_request(body)
    found = await queries.list_inferences(database, query, _configured(metrics or {}))
    next_cursor = None
    if found and _timestamp_only(query.order_by) and not query.reverse:
        descending = (
            query.keyset[0] == "<"
            if query.keyset
            else not query.order_by or query.order_by[0].direction == "descending"
        )
        next_cursor = encode_cursor("<" if descending else ">", found[-1].id)
    return InferencePage(tuple(found), query.include_model_inferences, True, next_cursor, query.include_usage)


async def get_inferences(database: Database, body: Any) -> InferencePage:
    """The inferences of a get_inferences body, in the order of its ids; unknown ids are left out."""
    query = parse_get_request(body)
    found = await queries.list_inferences(database, query) if query.ids else []
    by_id = {r.id: r for r in found}
    ordered = [by_id[i] for i in query.ids or () if i in by_id]
    return InferencePage(tuple(ordered), query.include_model_inferences, False, include_usage=query.include_usage)
