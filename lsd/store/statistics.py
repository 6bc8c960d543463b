"""Incremental statistics refresh: fold the rows ingested since the last refresh into the statistics tables.

The refresh is exact when rows arrive late or transactions commit out of order (see docs/querying.md):
every source row carries `ingest_xid`, the id of the transaction that inserted it, and a refresh runs in one
REPEATABLE READ transaction that stores its snapshot. The next refresh reads the rows visible in its own
snapshot but not in the stored one, so each committed row is folded in exactly once, by the first refresh
that can see it. A refresh reads only the rows written since the stored snapshot's xmin, through the
`*_ingest` indexes, plus index lookups per new row: its cost follows the new rows, not the tables.

Concurrent refreshes are safe: the watermark rows are locked FOR UPDATE inside the REPEATABLE READ
transaction, so a second refresher that started from the same watermark fails with a serialization error
instead of counting twice. The advisory lock only spares replicas that wasted work.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from lsd.errors import CLIENT_GONE
from lsd.store.database import Database

# pg_try_advisory_lock key for the cluster-wide statistics refresh: 'LSD' + 'stat'.
STATISTICS_LOCK_KEY = 0x4C5344_73746174


class RefreshConflict(RuntimeError):
    """Another refresh committed after this one started (one that skipped the advisory lock); nothing was counted
    twice, and the next refresh continues from the other one's watermark."""


@dataclass(frozen=True, slots=True)
class RefreshResult:
    """What one refresh folded in: new rows per source table, and how long it took."""

    rows: dict[str, int]
    duration_s: float

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())


def _new(alias: str, snapshot: str | None) -> sql.Composable:
    """Rows of `alias` visible now but not in `snapshot` (all rows when there is none)."""
    if snapshot is None:
        return sql.SQL("TRUE")
    return sql.SQL(
        "({a}.ingest_xid >= pg_snapshot_xmin({s}::pg_snapshot) "
        "AND NOT pg_visible_in_snapshot({a}.ingest_xid, {s}::pg_snapshot))"
    ).format(a=sql.Identifier(alias), s=sql.Literal(snapshot))


def _old(alias: str, snapshot: str | None) -> sql.Composable:
    """Rows of `alias` that the previous refresh already saw."""
    if snapshot is None:
        return sql.SQL("FALSE")
    return sql.SQL("pg_visible_in_snapshot({a}.ingest_xid, {s}::pg_snapshot)").format(
        a=sql.Identifier(alias), s=sql.Literal(snapshot)
    )


# New inferences: per-function buckets, per-variant totals, and the feedback that was waiting for them
# (feedback about the inference, or about its episode when its (function, variant) is new to the episode).
_INFERENCES = sql.SQL("""
WITH d AS MATERIALIZED (
    SELECT 'chat' AS src, c.id, c.episode_id, c.function_name, c.variant_name, c.created_at, c.input_tokens,
           c.output_tokens, c.cost, c.processing_time_ms, lsd_session_tag(c.tags, 'lsd::session_id') AS session_id,
           lsd_session_tag(c.tags, 'lsd::parent_session_id') AS parent_session_id, c.api_key_public_id,
           lsd_session_tag(c.tags, 'user') AS end_user, c.tags ? 'lsd::stream_error' AS cut
    FROM chat_inferences c WHERE {chat_new}
    UNION ALL
    SELECT 'json', j.id, j.episode_id, j.function_name, j.variant_name, j.created_at, j.input_tokens,
           j.output_tokens, j.cost, j.processing_time_ms, lsd_session_tag(j.tags, 'lsd::session_id'),
           lsd_session_tag(j.tags, 'lsd::parent_session_id'), j.api_key_public_id, lsd_session_tag(j.tags, 'user'),
           j.tags ? 'lsd::stream_error'
    FROM json_inferences j WHERE {json_new}
),
by_session AS (
    INSERT INTO session_statistics AS s (
        session_id, parent_session_id, first_seen, last_seen, inference_count, input_tokens, output_tokens, cost,
        priced_count, processing_time_ms_sum, models, api_key_public_ids, users, failed_inference_count)
    SELECT session_id, max(parent_session_id), min(created_at), max(created_at), count(*),
           coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost), 0), count(cost),
           coalesce(sum(processing_time_ms), 0),
           array_agg(DISTINCT lsd_session_model(function_name, variant_name)
                     ORDER BY lsd_session_model(function_name, variant_name)),
           coalesce(array_agg(DISTINCT api_key_public_id ORDER BY api_key_public_id)
                    FILTER (WHERE api_key_public_id IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT end_user ORDER BY end_user) FILTER (WHERE end_user IS NOT NULL), '{{}}'),
           count(*) FILTER (WHERE cut)  -- a stream its provider cut: a row, but no whole answer
    FROM d WHERE session_id IS NOT NULL GROUP BY 1
    ON CONFLICT (session_id) DO UPDATE SET
        parent_session_id = greatest(s.parent_session_id, EXCLUDED.parent_session_id),
        first_seen = least(s.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(s.last_seen, EXCLUDED.last_seen),
        inference_count = s.inference_count + EXCLUDED.inference_count,
        input_tokens = s.input_tokens + EXCLUDED.input_tokens,
        output_tokens = s.output_tokens + EXCLUDED.output_tokens,
        cost = s.cost + EXCLUDED.cost,
        priced_count = s.priced_count + EXCLUDED.priced_count,
        processing_time_ms_sum = s.processing_time_ms_sum + EXCLUDED.processing_time_ms_sum,
        -- (a session's next steps mostly add no model or key: the union only when they do)
        models = CASE WHEN EXCLUDED.models <@ s.models THEN s.models
                      ELSE lsd_sorted_union(s.models, EXCLUDED.models) END,
        api_key_public_ids = CASE WHEN EXCLUDED.api_key_public_ids <@ s.api_key_public_ids THEN s.api_key_public_ids
                                  ELSE lsd_sorted_union(s.api_key_public_ids, EXCLUDED.api_key_public_ids) END,
        users = CASE WHEN EXCLUDED.users <@ s.users THEN s.users ELSE lsd_sorted_union(s.users, EXCLUDED.users) END,
        failed_inference_count = s.failed_inference_count + EXCLUDED.failed_inference_count
),
by_bucket AS (
    INSERT INTO inference_by_function_statistics AS s (
        function_name, variant_name, bucket_start, inference_count, input_tokens, output_tokens, cost,
        processing_time_ms_sum, processing_time_ms_count, priced_count)
    SELECT function_name, variant_name, date_trunc('hour', created_at, 'UTC'), count(*),
           coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0), coalesce(sum(cost), 0),
           coalesce(sum(processing_time_ms), 0), count(processing_time_ms), count(cost)
    FROM d GROUP BY 1, 2, 3
    ON CONFLICT (function_name, variant_name, bucket_start) DO UPDATE SET
        inference_count = s.inference_count + EXCLUDED.inference_count,
        input_tokens = s.input_tokens + EXCLUDED.input_tokens,
        output_tokens = s.output_tokens + EXCLUDED.output_tokens,
        cost = s.cost + EXCLUDED.cost,
        priced_count = s.priced_count + EXCLUDED.priced_count,
        processing_time_ms_sum = s.processing_time_ms_sum + EXCLUDED.processing_time_ms_sum,
        processing_time_ms_count = s.processing_time_ms_count + EXCLUDED.processing_time_ms_count
),
by_variant AS (
    INSERT INTO variant_statistics AS s (function_name, variant_name, inference_count, first_seen, last_seen)
    SELECT function_name, variant_name, count(*), min(created_at), max(created_at) FROM d GROUP BY 1, 2
    ON CONFLICT (function_name, variant_name) DO UPDATE SET
        inference_count = s.inference_count + EXCLUDED.inference_count,
        first_seen = least(s.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(s.last_seen, EXCLUDED.last_seen)
),
new_pairs AS (
    SELECT DISTINCT d.episode_id, d.function_name, d.variant_name
    FROM d
    WHERE EXISTS (SELECT 1 FROM statistics_feedback_by_target t
                  WHERE t.target_id = d.episode_id AND t.target_level = 'episode')
      AND NOT EXISTS (SELECT 1 FROM chat_inferences o
                      WHERE o.episode_id = d.episode_id AND o.function_name = d.function_name
                        AND o.variant_name = d.variant_name AND {chat_old})
      AND NOT EXISTS (SELECT 1 FROM json_inferences o
                      WHERE o.episode_id = d.episode_id AND o.function_name = d.function_name
                        AND o.variant_name = d.variant_name AND {json_old})
),
waiting AS (
    SELECT d.function_name, d.variant_name, t.metric_name, t.feedback_count, t.value_sum, t.value_sum_squares
    FROM d JOIN statistics_feedback_by_target t ON t.target_id = d.id AND t.target_level = 'inference'
    UNION ALL
    SELECT p.function_name, p.variant_name, t.metric_name, t.feedback_count, t.value_sum, t.value_sum_squares
    FROM new_pairs p JOIN statistics_feedback_by_target t ON t.target_id = p.episode_id AND t.target_level = 'episode'
),
by_metric AS (
    INSERT INTO variant_metric_statistics AS s (
        function_name, variant_name, metric_name, feedback_count, value_sum, value_sum_squares)
    SELECT function_name, variant_name, metric_name, sum(feedback_count), sum(value_sum), sum(value_sum_squares)
    FROM waiting GROUP BY 1, 2, 3
    ON CONFLICT (function_name, variant_name, metric_name) DO UPDATE SET
        feedback_count = s.feedback_count + EXCLUDED.feedback_count,
        value_sum = s.value_sum + EXCLUDED.value_sum,
        value_sum_squares = s.value_sum_squares + EXCLUDED.value_sum_squares
)
SELECT count(*) FILTER (WHERE src = 'chat'), count(*) FILTER (WHERE src = 'json') FROM d
""")

# One histogram of successful attempts (latency or time to first token) at one grain (minute or hour).
_HISTOGRAM = """{measure}_{grain} AS (
    INSERT INTO model_{measure}_histogram_{grain} AS s (model_name, model_provider_name, bucket_start, le_ms, count)
    SELECT model_name, model_provider_name, date_trunc('{grain}', created_at, 'UTC'), lsd_latency_bucket({column}),
           count(*)
    FROM d WHERE status = 'ok' AND {column} IS NOT NULL GROUP BY 1, 2, 3, 4
    ON CONFLICT (model_name, model_provider_name, bucket_start, le_ms) DO UPDATE SET count = s.count + EXCLUDED.count
),
"""
_HISTOGRAMS = "".join(
    _HISTOGRAM.format(measure=measure, grain=grain, column=column)
    for measure, column in (("latency", "latency_ms"), ("ttft", "ttft_ms"))
    for grain in ("minute", "hour")
)

# New provider attempts: per-model buckets, latency and TTFT histograms, and failed attempts per function. A stream
# its client left (error_kind CLIENT_GONE) is an attempt, not a failure: nothing failed (as in /metrics, where its
# outcome is `cancelled`).
assert CLIENT_GONE == "client_disconnected"  # as the SQL below names it
_ATTEMPTS = sql.SQL(
    """
WITH d AS MATERIALIZED (
    SELECT m.model_name, m.model_provider_name, m.function_name, m.variant_name, m.created_at,
           CASE WHEN m.status <> 'ok' AND m.error_kind = 'client_disconnected' THEN 'cancelled' ELSE m.status END
               AS status,
           m.latency_ms, m.ttft_ms, m.input_tokens, m.output_tokens, m.cost, m.attempt,
           lsd_session_tag(m.tags, 'lsd::session_id') AS session_id,
           lsd_session_tag(m.tags, 'lsd::parent_session_id') AS parent_session_id,
           m.tags ->> 'tensorzero::api_key_public_id' AS api_key_public_id, lsd_session_tag(m.tags, 'user') AS end_user
    FROM model_inferences m WHERE {model_new}
),
session_failures AS (
    INSERT INTO session_statistics AS s (
        session_id, parent_session_id, first_seen, last_seen, inference_count, input_tokens, output_tokens, cost,
        priced_count, processing_time_ms_sum, models, api_key_public_ids, users, failed_inference_count)
    SELECT session_id, max(parent_session_id), min(created_at), max(created_at), 0, 0, 0, 0, 0, 0, '{{}}',
           coalesce(array_agg(DISTINCT api_key_public_id ORDER BY api_key_public_id)
                    FILTER (WHERE api_key_public_id IS NOT NULL), '{{}}'),
           coalesce(array_agg(DISTINCT end_user ORDER BY end_user) FILTER (WHERE end_user IS NOT NULL), '{{}}'),
           count(*)
    FROM d WHERE session_id IS NOT NULL AND attempt = 1 GROUP BY 1
    ON CONFLICT (session_id) DO UPDATE SET
        parent_session_id = greatest(s.parent_session_id, EXCLUDED.parent_session_id),
        first_seen = least(s.first_seen, EXCLUDED.first_seen),
        last_seen = greatest(s.last_seen, EXCLUDED.last_seen),
        api_key_public_ids = CASE WHEN EXCLUDED.api_key_public_ids <@ s.api_key_public_ids THEN s.api_key_public_ids
                                  ELSE lsd_sorted_union(s.api_key_public_ids, EXCLUDED.api_key_public_ids) END,
        users = CASE WHEN EXCLUDED.users <@ s.users THEN s.users ELSE lsd_sorted_union(s.users, EXCLUDED.users) END,
        failed_inference_count = s.failed_inference_count + EXCLUDED.failed_inference_count
),
by_model AS (
    INSERT INTO model_provider_statistics AS s (
        model_name, model_provider_name, bucket_start, attempts, failures, input_tokens, output_tokens, cost,
        latency_ms_sum, latency_ms_count, priced_count)
    SELECT model_name, model_provider_name, date_trunc('hour', created_at, 'UTC'), count(*),
           count(*) FILTER (WHERE status NOT IN ('ok', 'cancelled')), coalesce(sum(input_tokens), 0),
           coalesce(sum(output_tokens), 0),
           coalesce(sum(cost), 0), coalesce(sum(latency_ms), 0), count(latency_ms), count(cost)
    FROM d GROUP BY 1, 2, 3
    ON CONFLICT (model_name, model_provider_name, bucket_start) DO UPDATE SET
        attempts = s.attempts + EXCLUDED.attempts,
        failures = s.failures + EXCLUDED.failures,
        input_tokens = s.input_tokens + EXCLUDED.input_tokens,
        output_tokens = s.output_tokens + EXCLUDED.output_tokens,
        cost = s.cost + EXCLUDED.cost,
        priced_count = s.priced_count + EXCLUDED.priced_count,
        latency_ms_sum = s.latency_ms_sum + EXCLUDED.latency_ms_sum,
        latency_ms_count = s.latency_ms_count + EXCLUDED.latency_ms_count
),
"""
    + _HISTOGRAMS
    + """failures AS (
    INSERT INTO inference_by_function_statistics AS s (function_name, variant_name, bucket_start, failed_attempts)
    SELECT function_name, variant_name, date_trunc('hour', created_at, 'UTC'), count(*)
    FROM d WHERE status NOT IN ('ok', 'cancelled') AND function_name IS NOT NULL AND variant_name IS NOT NULL
    GROUP BY 1, 2, 3
    ON CONFLICT (function_name, variant_name, bucket_start) DO UPDATE SET
        failed_attempts = s.failed_attempts + EXCLUDED.failed_attempts
)
SELECT count(*) FROM d
"""
)

# New feedback: attributed to the variants it concerns as of now, and remembered per target for inferences
# that arrive later. Must run after _INFERENCES, which reads statistics_feedback_by_target as it was.
_FEEDBACK = sql.SQL("""
WITH f AS MATERIALIZED (
    SELECT 'boolean' AS src, b.target_id, b.target_level, b.metric_name,
           CASE WHEN b.value THEN 1 ELSE 0 END::numeric AS v
    FROM boolean_metric_feedback b WHERE {boolean_new}
    UNION ALL
    SELECT 'float', x.target_id, x.target_level, x.metric_name, x.value::numeric
    FROM float_metric_feedback x WHERE {float_new}
),
agg AS MATERIALIZED (
    SELECT target_id, target_level, metric_name, count(*) AS n, sum(v) AS total, sum(v * v) AS squares
    FROM f WHERE target_level IN ('inference', 'episode') GROUP BY 1, 2, 3
),
by_target AS (
    INSERT INTO statistics_feedback_by_target AS s (
        target_id, target_level, metric_name, feedback_count, value_sum, value_sum_squares)
    SELECT target_id, target_level, metric_name, n, total, squares FROM agg
    ON CONFLICT (target_id, target_level, metric_name) DO UPDATE SET
        feedback_count = s.feedback_count + EXCLUDED.feedback_count,
        value_sum = s.value_sum + EXCLUDED.value_sum,
        value_sum_squares = s.value_sum_squares + EXCLUDED.value_sum_squares
),
attributed AS (
    SELECT i.function_name, i.variant_name, a.metric_name, a.n, a.total, a.squares
    FROM agg a
    JOIN LATERAL (
        SELECT c.function_name, c.variant_name FROM chat_inferences c WHERE c.id = a.target_id
        UNION ALL
        SELECT j.function_name, j.variant_name FROM json_inferences j WHERE j.id = a.target_id
    ) i ON TRUE
    WHERE a.target_level = 'inference'
    UNION ALL
    SELECT p.function_name, p.variant_name, a.metric_name, a.n, a.total, a.squares
    FROM agg a
    JOIN LATERAL (
        SELECT c.function_name, c.variant_name FROM chat_inferences c WHERE c.episode_id = a.target_id
        UNION
        SELECT j.function_name, j.variant_name FROM json_inferences j WHERE j.episode_id = a.target_id
    ) p ON TRUE
    WHERE a.target_level = 'episode'
),
by_metric AS (
    INSERT INTO variant_metric_statistics AS s (
        function_name, variant_name, metric_name, feedback_count, value_sum, value_sum_squares)
    SELECT function_name, variant_name, metric_name, sum(n), sum(total), sum(squares)
    FROM attributed GROUP BY 1, 2, 3
    ON CONFLICT (function_name, variant_name, metric_name) DO UPDATE SET
        feedback_count = s.feedback_count + EXCLUDED.feedback_count,
        value_sum = s.value_sum + EXCLUDED.value_sum,
        value_sum_squares = s.value_sum_squares + EXCLUDED.value_sum_squares
)
SELECT count(*) FILTER (WHERE src = 'boolean'), count(*) FILTER (WHERE src = 'float') FROM f
""")

# For the refresh's transaction only (SET LOCAL). Every join of a refresh pairs the new rows with rows found by key
# (the inference of a feedback row, the feedback waiting for an inference): index probes per new row keep its cost
# in proportion to the new rows. Left to itself the planner hashes a whole side instead (a sequential scan of
# statistics_feedback_by_target, which grows with the history: 0.5 s of a 1.8 s refresh at 1M inferences), and
# once its estimate over ~90 partitions passes jit_above_cost it spends seconds compiling (issue #22). See
# docs/scaling.md for the measurements.
REFRESH_SETTINGS = (
    "SELECT set_config('jit', 'off', true), set_config('enable_hashjoin', 'off', true), "
    "set_config('enable_mergejoin', 'off', true)"
)
_WATERMARKS = "SELECT source_table, last_snapshot::text FROM statistics_watermarks ORDER BY source_table FOR UPDATE"
_ADVANCE = (
    "UPDATE statistics_watermarks SET last_snapshot = pg_current_snapshot(), refreshed_at = now(), "
    "rows_processed = rows_processed + %s WHERE source_table = %s"
)


def _statements(snapshots: dict[str, str | None]) -> list[tuple[sql.Composed, tuple[str, ...]]]:
    """The refresh statements in order, each with the source tables its result row counts."""
    s = snapshots.get
    return [
        (
            _INFERENCES.format(
                chat_new=_new("c", s("chat_inferences")),
                json_new=_new("j", s("json_inferences")),
                chat_old=_old("o", s("chat_inferences")),
                json_old=_old("o", s("json_inferences")),
            ),
            ("chat_inferences", "json_inferences"),
        ),
        (_ATTEMPTS.format(model_new=_new("m", s("model_inferences"))), ("model_inferences",)),
        (
            _FEEDBACK.format(
                boolean_new=_new("b", s("boolean_metric_feedback")), float_new=_new("x", s("float_metric_feedback"))
            ),
            ("boolean_metric_feedback", "float_metric_feedback"),
        ),
    ]


def _try_lock(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (STATISTICS_LOCK_KEY,)).fetchone()
    return bool(row and row[0])


def refresh_statistics_sync(conn: psycopg.Connection[Any]) -> RefreshResult | None:
    """One refresh on an autocommit connection (for `lsd stats refresh`): None when another process holds the
    statistics lock. Raises RefreshConflict (see there) and psycopg errors from the database."""
    if not _try_lock(conn):
        return None
    try:
        started = time.perf_counter()
        rows: dict[str, int] = {}
        # The lock is taken before the transaction starts, so its snapshot sees the last refresh's commit.
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute(REFRESH_SETTINGS)
            snapshots: dict[str, str | None] = dict(conn.execute(_WATERMARKS).fetchall())
            for statement, tables in _statements(snapshots):
                counts = conn.execute(statement).fetchone()
                rows.update(zip(tables, counts or (), strict=True))
            for table in snapshots:
                conn.execute(_ADVANCE, (rows.get(table, 0), table))
        return RefreshResult(rows=rows, duration_s=time.perf_counter() - started)
    except psycopg.errors.SerializationFailure as exc:
        raise RefreshConflict(f"another statistics refresh committed first: {exc}") from None
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (STATISTICS_LOCK_KEY,))


async def refresh_statistics(database: Database) -> RefreshResult | None:
    """One refresh per cluster at a time (the `statistics` job): None when another process holds the statistics
    lock. Raises RefreshConflict (see there) and psycopg errors; the job runner reports them and runs again at the
    next interval. The lock is a session lock: it runs on a session connection, never a pooled one."""
    async with database.session() as conn:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s)", (STATISTICS_LOCK_KEY,))
        locked = await cur.fetchone()
        if not locked or not locked[0]:
            return None
        try:
            started = time.perf_counter()
            rows: dict[str, int] = {}
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                await conn.execute(REFRESH_SETTINGS)
                cur = await conn.execute(_WATERMARKS)
                snapshots: dict[str, str | None] = dict(await cur.fetchall())
                for statement, tables in _statements(snapshots):
                    cur = await conn.execute(statement)
                    rows.update(zip(tables, await cur.fetchone() or (), strict=True))
                for table in snapshots:
                    await conn.execute(_ADVANCE, (rows.get(table, 0), table))
            return RefreshResult(rows=rows, duration_s=time.perf_counter() - started)
        except psycopg.errors.SerializationFailure as exc:
            raise RefreshConflict(f"another statistics refresh committed first: {exc}") from None
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (STATISTICS_LOCK_KEY,))
