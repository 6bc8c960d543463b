"""The console's own reads (lsd.api.console): aggregates from the statistics tables, bounded lists elsewhere.

Every statement here is bounded: aggregates read the statistics tables (sql/migrations/0002_statistics.sql) by
their `bucket_start` index, lists carry a LIMIT, and a read of an inference or feedback table goes through an
index and an id bound that prunes its daily partitions. None counts or scans an inference table
(`make bench` part `console` EXPLAINs every page's statements and asserts it). Inferences themselves are listed
through lsd.store.queries (the query API's one list builder), not here.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from psycopg.rows import class_row, dict_row

from lsd.store.batch import BatchRow
from lsd.store.database import Database
from lsd.store.escaping import unescape_optional
from lsd.store.experiments import AllocationRow
from lsd.store.queries import attempts_statement, uuid7_floor_ms

EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)  # date_bin's origin: buckets line up with UTC hours and days
# Feedback ids are made after their target's id: a target's feedback lies in partitions from its day on.
FEEDBACK_LOOKBACK = dt.timedelta(hours=1)
MAX_FEEDBACK_ROWS = 200
MAX_ROWS = 500


@dataclass(frozen=True, slots=True)
class TrafficPoint:
    """One time bucket (or one group) of successful inferences, from inference_by_function_statistics."""

    label: str  # the bucket's start (ISO) or the group's name
    inferences: int
    failed_attempts: int
    input_tokens: int
    output_tokens: int
    cost: float | None  # None: no priced inference (unknown, not free)
    mean_ms: float | None


@dataclass(frozen=True, slots=True)
class LatencyPoint:
    label: str  # the bucket's start (ISO), or "model / provider"
    attempts: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class ProviderRow:
    model_name: str
    model_provider_name: str
    attempts: int
    failures: int
    input_tokens: int
    output_tokens: int
    cost: float | None  # None: no priced attempt
    mean_ms: float | None
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True, slots=True)
class VariantTotals:
    variant_name: str
    inference_count: int  # all time (variant_statistics)
    first_seen: dt.datetime
    last_seen: dt.datetime


@dataclass(frozen=True, slots=True)
class VariantMetric:
    variant_name: str
    metric_name: str
    feedback_count: int
    mean: float
    variance: float | None


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    kind: str  # boolean | float | comment | demonstration
    id: UUID
    created_at: dt.datetime
    target_id: UUID
    metric_name: str | None
    value: Any
    api_key_public_id: str | None


@dataclass(frozen=True, slots=True)
class DatasetRow:
    dataset_name: str
    function_name: str
    datapoints: int
    last_updated: dt.datetime


@dataclass(frozen=True, slots=True)
class BucketRow:
    rule_key: str
    scope_key: str
    balance: float  # refilled up to now
    capacity: float
    refill_per_s: float
    updated_at: dt.datetime


def id_floor(at: dt.datetime) -> UUID:
    """The smallest UUIDv7 of an instant: `id >= id_floor(t)` prunes the daily partitions before t."""
    return uuid7_floor_ms(int(at.timestamp() * 1000))


def _ids_floor(target: UUID) -> UUID:
    """The smallest id a row made after `target` (a UUIDv7) can have; a non-v7 target bounds nothing."""
    if target.version != 7:
        return UUID(int=0)
    return uuid7_floor_ms(max((target.int >> 80) - FEEDBACK_LOOKBACK // dt.timedelta(milliseconds=1), 0))


# -- aggregates: statistics tables only --------------------------------------------------------------------

# A cost is known when some inference had a price (priced_count), or when a bucket holds a cost that a replica older
# than migration 17 folded without counting it (a rolling deploy): unknown only when neither.
_TRAFFIC_COLUMNS = """
    sum(inference_count)::bigint, sum(failed_attempts)::bigint, sum(input_tokens)::bigint,
    sum(output_tokens)::bigint, CASE WHEN sum(priced_count) > 0 OR sum(cost) <> 0 THEN sum(cost)::float8 END,
    sum(processing_time_ms_sum)::float8 / nullif(sum(processing_time_ms_count), 0)
"""
_TRAFFIC_SERIES = f"""
SELECT date_bin(%(step)s, bucket_start, %(origin)s) AS t, {_TRAFFIC_COLUMNS}
FROM inference_by_function_statistics
WHERE bucket_start >= %(since)s AND bucket_start < %(until)s
  AND (%(function)s::text IS NULL OR function_name = %(function)s)
GROUP BY 1 ORDER BY 1
"""
_TRAFFIC_BY = """
SELECT {group}, {columns}
FROM inference_by_function_statistics
WHERE bucket_start >= %(since)s AND bucket_start < %(until)s
  AND (%(function)s::text IS NULL OR function_name = %(function)s)
GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %(limit)s
"""
_LATENCY_SERIES = """
SELECT t, sum(c)::bigint,
       lsd_histogram_quantile(0.5, array_agg(le_ms ORDER BY le_ms), array_agg(c ORDER BY le_ms)),
       lsd_histogram_quantile(0.99, array_agg(le_ms ORDER BY le_ms), array_agg(c ORDER BY le_ms))
FROM (SELECT date_bin(%(step)s, bucket_start, %(origin)s) AS t, le_ms, sum(count)::bigint AS c
      FROM {table} WHERE bucket_start >= %(since)s AND bucket_start < %(until)s GROUP BY 1, 2) h
GROUP BY t ORDER BY t
"""
_PROVIDERS = """
SELECT s.model_name, s.model_provider_name, sum(s.attempts)::bigint, sum(s.failures)::bigint,
       sum(s.input_tokens)::bigint, sum(s.output_tokens)::bigint,
       CASE WHEN sum(s.priced_count) > 0 OR sum(s.cost) <> 0 THEN sum(s.cost)::float8 END,
       sum(s.latency_ms_sum)::float8 / nullif(sum(s.latency_ms_count), 0), q.p50_ms, q.p99_ms
FROM model_provider_statistics s
LEFT JOIN lsd_model_latency_quantiles(%(since)s, %(until)s) q
       ON q.model_name = s.model_name AND q.model_provider_name = s.model_provider_name
WHERE s.bucket_start >= date_trunc('hour', %(since)s::timestamptz, 'UTC') AND s.bucket_start < %(until)s
GROUP BY 1, 2, q.p50_ms, q.p99_ms ORDER BY 3 DESC, 1, 2 LIMIT %(limit)s
"""


def _traffic(label: str, row: tuple[Any, ...]) -> TrafficPoint:
    return TrafficPoint(label, row[1] or 0, row[2] or 0, row[3] or 0, row[4] or 0, row[5], row[6])


async def traffic_series(
    database: Database, since: dt.datetime, until: dt.datetime, step: dt.timedelta, function_name: str | None = None
) -> list[TrafficPoint]:
    """Inferences, failed attempts, tokens, cost and mean processing time per `step` (hourly buckets summed)."""
    params = {"step": step, "origin": EPOCH, "since": since, "until": until, "function": function_name}
    async with database.reading("console") as conn:
        cur = await conn.execute(_TRAFFIC_SERIES, params)
        return [_traffic(r[0].astimezone(dt.UTC).isoformat(), r) for r in await cur.fetchall()]


async def traffic_by(
    database: Database, group: str, since: dt.datetime, until: dt.datetime, function_name: str | None = None
) -> list[TrafficPoint]:
    """The same totals per function (`group` "function_name") or per variant ("variant_name")."""
    if group not in ("function_name", "variant_name"):
        raise ValueError(f"cannot group by {group!r}")
    statement = _TRAFFIC_BY.format(group=group, columns=_TRAFFIC_COLUMNS)
    params = {"since": since, "until": until, "function": function_name, "limit": MAX_ROWS}
    async with database.reading("console") as conn:
        cur = await conn.execute(statement, params)
        return [_traffic(r[0], r) for r in await cur.fetchall()]


async def latency_series(
    database: Database, since: dt.datetime, until: dt.datetime, step: dt.timedelta, measure: str = "latency"
) -> list[LatencyPoint]:
    """p50 and p99 latency (`measure` "latency") or time to first token ("ttft", streamed attempts) of successful
    provider attempts per `step`, from the histograms (the minute table for steps under an hour)."""
    if measure not in ("latency", "ttft"):
        raise ValueError(f"no histogram of {measure!r}")
    grain = "minute" if step < dt.timedelta(hours=1) else "hour"
    table = f"model_{measure}_histogram_{grain}"
    params = {"step": step, "origin": EPOCH, "since": since, "until": until}
    async with database.reading("console") as conn:
        cur = await conn.execute(_LATENCY_SERIES.format(table=table), params)
        return [LatencyPoint(r[0].astimezone(dt.UTC).isoformat(), r[1], r[2], r[3]) for r in await cur.fetchall()]


async def providers(database: Database, since: dt.datetime, until: dt.datetime) -> list[ProviderRow]:
    """Attempts, failures, tokens, cost, mean and p50/p99 latency per model and provider."""
    async with database.reading("console") as conn:
        cur = await conn.execute(_PROVIDERS, {"since": since, "until": until, "limit": MAX_ROWS})
        return [ProviderRow(*r) for r in await cur.fetchall()]


async def variant_totals(database: Database, function_name: str) -> list[VariantTotals]:
    async with database.reading("console") as conn, conn.cursor(row_factory=class_row(VariantTotals)) as cur:
        await cur.execute(
            "SELECT variant_name, inference_count, first_seen, last_seen FROM variant_statistics "
            "WHERE function_name = %s ORDER BY variant_name LIMIT %s",
            (function_name, MAX_ROWS),
        )
        return await cur.fetchall()


async def variant_metrics(database: Database, function_name: str) -> list[VariantMetric]:
    """Each metric's mean and sample variance per variant (variant_metric_summary, a view over a statistics table)."""
    async with database.reading("console") as conn:
        cur = await conn.execute(
            "SELECT variant_name, metric_name, feedback_count, mean::float8, variance::float8 "
            "FROM variant_metric_summary WHERE function_name = %s ORDER BY metric_name, variant_name LIMIT %s",
            (function_name, MAX_ROWS),
        )
        return [VariantMetric(*r) for r in await cur.fetchall()]


async def experiment_allocation(database: Database, function_name: str) -> AllocationRow | None:
    """The adaptive experiment's stored allocation of a function (experiment_allocations), if it has one."""
    columns = "function_name, weights, phase, evidence, stopped, winner, stopped_at, fingerprint, updated_at"
    async with database.reading("console") as conn, conn.cursor(row_factory=class_row(AllocationRow)) as cur:
        await cur.execute(f"SELECT {columns} FROM experiment_allocations WHERE function_name = %s", (function_name,))
        return await cur.fetchone()


# -- feedback of one inference or episode: target index, partitions from the target's day --------------------

_FEEDBACK = """
SELECT * FROM (
    (SELECT 'boolean' AS kind, id, created_at, target_id, metric_name, to_jsonb(value) AS value, api_key_public_id
     FROM boolean_metric_feedback WHERE target_id = %(t)s AND id >= %(floor)s ORDER BY id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT 'float', id, created_at, target_id, metric_name, to_jsonb(value), api_key_public_id
     FROM float_metric_feedback WHERE target_id = %(t)s AND id >= %(floor)s ORDER BY id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT 'comment', id, created_at, target_id, NULL, to_jsonb(value), api_key_public_id
     FROM comment_feedback WHERE target_id = %(t)s AND id >= %(floor)s ORDER BY id DESC LIMIT %(limit)s)
    UNION ALL
    (SELECT 'demonstration', id, created_at, inference_id, NULL, value, api_key_public_id
     FROM demonstration_feedback WHERE inference_id = %(t)s AND id >= %(floor)s ORDER BY id DESC LIMIT %(limit)s)
) f ORDER BY id DESC LIMIT %(limit)s
"""


@dataclass(frozen=True, slots=True)
class FailedInference:
    """An inference whose every attempt failed: no inference row was written, its attempts are all there is."""

    id: UUID
    function_name: str | None
    variant_name: str | None
    attempts: list[dict[str, Any]]
    tags: dict[str, str] | None = None  # the request's (schema 19 on): its session, user and key


_FAILED_NAMES = (
    "SELECT function_name, variant_name, tags FROM model_inferences WHERE inference_id = %(ids)s[1] "
    "AND id >= %(floor)s ORDER BY id DESC LIMIT 1"
)


async def failed_inference(database: Database, inference_id: UUID) -> FailedInference | None:
    """The attempts of an inference that has no row (every attempt failed), or None when it has none either."""
    text, params = attempts_statement([inference_id])
    async with database.reading("console") as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(text, params)
        attempts = await cur.fetchall()
        if not attempts or any(a["status"] == "ok" for a in attempts):
            return None  # none, or an answer whose inference row is not readable yet: not a failed inference
        await cur.execute(_FAILED_NAMES, params)
        names = await cur.fetchone() or {}
    for attempt in attempts:
        for column in ("error", "raw_request", "raw_response"):  # text as stored (lsd.store.escaping)
            attempt[column] = unescape_optional(attempt[column])
    return FailedInference(
        inference_id, names.get("function_name"), names.get("variant_name"), attempts, names.get("tags")
    )


async def feedback_for(database: Database, target_id: UUID) -> list[FeedbackRow]:
    """The newest feedback about an inference or an episode (every kind), newest first. Read from the primary:
    the console shows feedback it has just added."""
    params = {"t": target_id, "floor": _ids_floor(target_id), "limit": MAX_FEEDBACK_ROWS}
    async with database.connection("console") as conn:
        cur = await conn.execute(_FEEDBACK, params)
        rows = await cur.fetchall()
    return [
        FeedbackRow(r[0], r[1], r[2], r[3], r[4], unescape_optional(r[5]) if r[0] == "comment" else r[5], r[6])
        for r in rows
    ]


# -- datasets, batches, rate limits --------------------------------------------------------------------------

_DATASETS = """
SELECT dataset_name, function_name, count(*)::bigint, max(updated_at) FROM (
    SELECT dataset_name, function_name, updated_at FROM chat_datapoints WHERE staled_at IS NULL AND NOT is_deleted
    UNION ALL
    SELECT dataset_name, function_name, updated_at FROM json_datapoints WHERE staled_at IS NULL AND NOT is_deleted
) d GROUP BY 1, 2 ORDER BY 1, 2 LIMIT %s
"""


async def datasets(database: Database) -> list[DatasetRow]:
    async with database.reading("console") as conn:
        cur = await conn.execute(_DATASETS, (MAX_ROWS,))
        return [DatasetRow(*r) for r in await cur.fetchall()]


_BATCHES = """
SELECT id, created_at, function_name, variant_name, model_name, model_provider_name, status, num_inferences,
       completed_at
FROM batch_requests WHERE id >= %s ORDER BY id DESC LIMIT %s
"""


@dataclass(frozen=True, slots=True)
class BatchSummary:
    id: UUID
    created_at: dt.datetime
    function_name: str
    variant_name: str
    model_name: str
    model_provider_name: str
    status: str
    num_inferences: int
    completed_at: dt.datetime | None


async def recent_batches(database: Database, since: dt.datetime, limit: int = 100) -> list[BatchSummary]:
    """The newest batches made since `since` (partitions before it pruned), newest first."""
    async with database.reading("console") as conn, conn.cursor(row_factory=class_row(BatchSummary)) as cur:
        await cur.execute(_BATCHES, (id_floor(since), limit))
        return await cur.fetchall()


def batch_raw(batch: BatchRow) -> tuple[str | None, str | None]:
    """A batch's stored (redacted) raw request and response, as text."""
    return unescape_optional(batch.raw_request), unescape_optional(batch.raw_response)


_BUCKETS = """
SELECT rule_key, scope_key,
       least(capacity, balance + refill_per_s * greatest(0, extract(epoch FROM clock_timestamp() - updated_at))),
       capacity, refill_per_s, updated_at
FROM rate_limit_buckets ORDER BY updated_at DESC LIMIT %s
"""


async def rate_limit_buckets(database: Database, limit: int = 200) -> list[BucketRow]:
    """The most recently used token buckets with their level now (refilled since their last update)."""
    async with database.connection("console") as conn:
        cur = await conn.execute(_BUCKETS, (limit,))
        return [BucketRow(*r) for r in await cur.fetchall()]
