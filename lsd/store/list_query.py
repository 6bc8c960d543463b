"""The query objects of list_inferences (built by lsd.inference.listing) and time bounds as UUIDv7 id bounds.

A time bound becomes an id bound (the smallest UUIDv7 of the instant), so PostgreSQL prunes the daily partitions
outside the range.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from psycopg import sql

OutputSource = Literal["inference", "demonstration", "none"]
Comparison = Literal["<", "<=", "=", ">", ">=", "!="]
Direction = Literal["ascending", "descending"]
MetricType = Literal["boolean", "float"]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)
# Attempt ids are made when the attempt starts, after its inference id; look a little earlier for safety.
ATTEMPT_LOOKBACK = dt.timedelta(hours=1)


# -- the query objects (built by lsd.inference.listing) ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class TagFilter:
    key: str
    value: str
    operator: Literal["=", "!="]


@dataclass(frozen=True, slots=True)
class BooleanMetricFilter:
    metric_name: str
    value: bool
    path: str  # where the metric was named in the request, for errors


@dataclass(frozen=True, slots=True)
class FloatMetricFilter:
    metric_name: str
    value: float
    operator: Comparison
    path: str


@dataclass(frozen=True, slots=True)
class TimeFilter:
    time: dt.datetime
    operator: Comparison


@dataclass(frozen=True, slots=True)
class DemonstrationFilter:
    has_demonstration: bool


@dataclass(frozen=True, slots=True)
class AndFilter:
    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class OrFilter:
    children: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class NotFilter:
    child: Filter


Filter = (
    TagFilter
    | BooleanMetricFilter
    | FloatMetricFilter
    | TimeFilter
    | DemonstrationFilter
    | AndFilter
    | OrFilter
    | NotFilter
)


@dataclass(frozen=True, slots=True)
class OrderBy:
    by: Literal["timestamp", "metric"]
    direction: Direction
    metric_name: str | None = None
    path: str = "order_by"


@dataclass(frozen=True, slots=True)
class ListQuery:
    """One list_inferences request. `keyset` is (`<` or `>`, id): rows strictly before or after that id."""

    function_name: str | None = None
    variant_name: str | None = None
    episode_id: UUID | None = None
    model_name: str | None = None
    ids: tuple[UUID, ...] | None = None
    tags: dict[str, str] = field(default_factory=dict)
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    output_source: OutputSource = "inference"
    filters: Filter | None = None
    order_by: tuple[OrderBy, ...] = ()
    limit: int = 20
    offset: int = 0
    keyset: tuple[Literal["<", ">"], UUID] | None = None
    reverse: bool = False  # TensorZero's `after`: query in the opposite order, then reverse the page
    include_model_inferences: bool = False
    include_usage: bool = False  # the answer's concern (the tokens and cost are always read)


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    type: MetricType
    level: Literal["inference", "episode"]


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One inference as stored, with its attempts when asked for (`kind` is chat or json)."""

    kind: str
    id: UUID
    episode_id: UUID
    function_name: str
    variant_name: str
    created_at: dt.datetime
    input: Any
    output: Any
    dispreferred_output: Any
    tags: dict[str, str]
    inference_params: Any
    processing_time_ms: int | None
    ttft_ms: int | None
    tool_params: Any
    output_schema: Any
    extra_body: Any
    model_inferences: list[dict[str, Any]] = field(default_factory=list)
    input_tokens: int | None = None  # read by the console (the query API's answer leaves them out: TensorZero's)
    output_tokens: int | None = None
    cost: Decimal | None = None


# -- time as id bounds -------------------------------------------------------------------------------------


def uuid7_floor_ms(ms: int) -> UUID:
    return UUID(int=(ms & 0xFFFFFFFFFFFF) << 80)


def _ms_ceil(at: dt.datetime) -> int:
    """The first whole millisecond at or after `at` (exact: no float arithmetic)."""
    delta = at - _EPOCH
    return -((-delta) // _MS)


def _ms_floor(at: dt.datetime) -> int:
    return (at - _EPOCH) // _MS


class Params:
    """Named bound parameters of one statement: each call adds a value and returns its placeholder."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return sql.Placeholder(name)


def time_condition(op: Comparison, at: dt.datetime, column: sql.Composable, params: Params) -> sql.Composable:
    """`timestamp op at` as a comparison of the UUIDv7 id, whose timestamp has millisecond resolution."""
    at_or_after = uuid7_floor_ms(_ms_ceil(at))  # id >= this  <=>  timestamp >= at
    after = uuid7_floor_ms(_ms_floor(at) + 1)  # id >= this  <=>  timestamp > at
    if op in (">=", ">", "<", "<="):
        bound = at_or_after if op in (">=", "<") else after
        return sql.SQL("{} {} {}").format(column, sql.SQL(">=" if op[0] == ">" else "<"), params(bound))
    equal = sql.SQL("({0} >= {1} AND {0} < {2})").format(column, params(at_or_after), params(after))
    return equal if op == "=" else sql.SQL("NOT {}").format(equal)
