-- LSD schema, version 2: incrementally maintained statistics. See docs/querying.md.
--
-- Every source table of a statistic gets `ingest_xid`, the 64-bit id of the transaction that inserted the row.
-- A refresh (lsd/store/statistics.py) runs in one REPEATABLE READ transaction and stores its snapshot in
-- statistics_watermarks; the next refresh processes exactly the rows visible in its own snapshot but not in the
-- stored one: `ingest_xid >= pg_snapshot_xmin(prev) AND NOT pg_visible_in_snapshot(ingest_xid, prev)`.
-- Rows that arrive late (old ids, spool replays) and transactions that commit out of order are therefore
-- counted exactly once, and a refresh reads only the rows written since the previous snapshot's xmin.

-- ---------------------------------------------------------------------------------------------------------
-- Ingestion markers on the source tables (a volatile default: existing rows are rewritten with this
-- migration's transaction id, and the first refresh counts them all)
-- ---------------------------------------------------------------------------------------------------------
ALTER TABLE chat_inferences ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE json_inferences ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE model_inferences ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE boolean_metric_feedback ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE float_metric_feedback ADD COLUMN ingest_xid xid8 NOT NULL DEFAULT pg_current_xact_id();

CREATE INDEX chat_inferences_ingest ON chat_inferences (ingest_xid);
CREATE INDEX json_inferences_ingest ON json_inferences (ingest_xid);
CREATE INDEX model_inferences_ingest ON model_inferences (ingest_xid);
CREATE INDEX boolean_metric_feedback_ingest ON boolean_metric_feedback (ingest_xid);
CREATE INDEX float_metric_feedback_ingest ON float_metric_feedback (ingest_xid);

-- One row per source table: the snapshot of the last refresh (NULL: never refreshed, so everything is new).
CREATE TABLE statistics_watermarks (
    source_table text PRIMARY KEY,
    last_snapshot pg_snapshot,
    refreshed_at timestamptz,
    rows_processed bigint NOT NULL DEFAULT 0
);
INSERT INTO statistics_watermarks (source_table) VALUES
    ('chat_inferences'), ('json_inferences'), ('model_inferences'),
    ('boolean_metric_feedback'), ('float_metric_feedback');

-- ---------------------------------------------------------------------------------------------------------
-- Statistics tables. Buckets are UTC hours (histograms: also UTC minutes), named by their start.
-- Sums treat NULL as 0; `*_count` columns count the non-NULL values a mean divides by.
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE inference_by_function_statistics (
    function_name text NOT NULL,
    variant_name text NOT NULL,
    bucket_start timestamptz NOT NULL,          -- the UTC hour of the inference id (created_at)
    inference_count bigint NOT NULL DEFAULT 0,  -- successful inferences (rows of chat_inferences/json_inferences)
    failed_attempts bigint NOT NULL DEFAULT 0,  -- provider attempts with status <> 'ok' (model_inferences)
    input_tokens bigint NOT NULL DEFAULT 0,
    output_tokens bigint NOT NULL DEFAULT 0,
    cost numeric NOT NULL DEFAULT 0,
    processing_time_ms_sum bigint NOT NULL DEFAULT 0,
    processing_time_ms_count bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (function_name, variant_name, bucket_start)
);

CREATE TABLE variant_statistics (
    function_name text NOT NULL,
    variant_name text NOT NULL,
    inference_count bigint NOT NULL,
    first_seen timestamptz NOT NULL,
    last_seen timestamptz NOT NULL,
    PRIMARY KEY (function_name, variant_name)
);

-- Boolean feedback counts as 1 (true) or 0 (false). Inference-level feedback belongs to the variant of its
-- inference; episode-level feedback to every (function, variant) that has an inference in the episode.
CREATE TABLE variant_metric_statistics (
    function_name text NOT NULL,
    variant_name text NOT NULL,
    metric_name text NOT NULL,
    feedback_count bigint NOT NULL,
    value_sum numeric NOT NULL,
    value_sum_squares numeric NOT NULL,
    PRIMARY KEY (function_name, variant_name, metric_name)
);

-- Bookkeeping for the refresh: the feedback already counted, per target. When an inference arrives after
-- feedback about it (or about its episode), this is what gets attributed to its variant.
CREATE TABLE statistics_feedback_by_target (
    target_id uuid NOT NULL,
    target_level text NOT NULL,
    metric_name text NOT NULL,
    feedback_count bigint NOT NULL,
    value_sum numeric NOT NULL,
    value_sum_squares numeric NOT NULL,
    PRIMARY KEY (target_id, target_level, metric_name)
);

CREATE TABLE model_provider_statistics (
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    bucket_start timestamptz NOT NULL,          -- the UTC hour of the attempt id (created_at)
    attempts bigint NOT NULL,
    failures bigint NOT NULL,                   -- status <> 'ok'
    input_tokens bigint NOT NULL,
    output_tokens bigint NOT NULL,
    cost numeric NOT NULL,
    latency_ms_sum bigint NOT NULL,
    latency_ms_count bigint NOT NULL,
    PRIMARY KEY (model_name, model_provider_name, bucket_start)
);

-- Latency histograms of successful attempts (status = 'ok'). `le_ms` is the bucket's upper bound (inclusive)
-- from lsd_latency_bounds(); 2147483647 is the overflow bucket. Counts are per bucket, not cumulative.
CREATE TABLE model_latency_histogram_minute (
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    bucket_start timestamptz NOT NULL,
    le_ms integer NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (model_name, model_provider_name, bucket_start, le_ms)
);
CREATE INDEX model_latency_histogram_minute_start ON model_latency_histogram_minute (bucket_start);

CREATE TABLE model_latency_histogram_hour (
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    bucket_start timestamptz NOT NULL,
    le_ms integer NOT NULL,
    count bigint NOT NULL,
    PRIMARY KEY (model_name, model_provider_name, bucket_start, le_ms)
);
CREATE INDEX model_latency_histogram_hour_start ON model_latency_histogram_hour (bucket_start);

-- ---------------------------------------------------------------------------------------------------------
-- Latency buckets and quantiles
-- ---------------------------------------------------------------------------------------------------------
-- The upper bounds (ms) of the latency buckets: 1-2-5 steps from 1 ms to 500 s, 600 s, then overflow.
CREATE FUNCTION lsd_latency_bounds() RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{1,2,5,10,20,50,100,200,500,1000,2000,5000,10000,20000,50000,100000,200000,500000,600000,2147483647}'::integer[]
$$;

-- The bucket of a latency: the smallest bound >= ms (negative latencies count as 0).
CREATE FUNCTION lsd_latency_bucket(ms integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lsd_latency_bounds())[1 + width_bucket(greatest(ms, 0),
        '{2,3,6,11,21,51,101,201,501,1001,2001,5001,10001,20001,50001,100001,200001,500001,600001}'::integer[])]
$$;

-- The q-quantile of a histogram given as parallel arrays sorted by bound, interpolating linearly inside the
-- bucket that holds it (as Prometheus' histogram_quantile). The overflow bucket answers its lower bound.
CREATE FUNCTION lsd_histogram_quantile(q double precision, le_ms integer[], counts bigint[])
RETURNS double precision
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    bounds integer[] := lsd_latency_bounds();
    total numeric := 0;
    rank numeric;
    seen numeric := 0;
    lower integer;
    pos integer;
BEGIN
    FOR i IN 1 .. coalesce(array_length(counts, 1), 0) LOOP
        total := total + counts[i];
    END LOOP;
    IF total = 0 THEN
        RETURN NULL;
    END IF;
    rank := q * total;
    FOR i IN 1 .. array_length(counts, 1) LOOP
        IF counts[i] > 0 AND seen + counts[i] >= rank THEN
            pos := array_position(bounds, le_ms[i]);
            lower := CASE WHEN pos IS NULL OR pos = 1 THEN 0 ELSE bounds[pos - 1] END;
            IF le_ms[i] = 2147483647 THEN
                RETURN lower;
            END IF;
            RETURN lower + (le_ms[i] - lower) * greatest(rank - seen, 0) / counts[i];
        END IF;
        seen := seen + counts[i];
    END LOOP;
    RETURN le_ms[array_length(le_ms, 1)];
END
$$;

-- The latency histogram of [from_ts, to_ts): whole UTC hours from the hourly table, the partial hours at
-- either end from the minute table (a minute counts when it starts inside the range).
CREATE FUNCTION lsd_model_latency_histogram(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (model_name text, model_provider_name text, le_ms integer, count bigint)
LANGUAGE sql STABLE AS $$
    WITH hours AS (
        SELECT CASE WHEN date_trunc('hour', from_ts, 'UTC') = from_ts THEN from_ts
                    ELSE date_trunc('hour', from_ts, 'UTC') + interval '1 hour' END AS first_hour,
               date_trunc('hour', to_ts, 'UTC') AS end_hour
    )
    SELECT x.model_name, x.model_provider_name, x.le_ms, sum(x.count)::bigint
    FROM (
        SELECT h.model_name, h.model_provider_name, h.le_ms, h.count
        FROM model_latency_histogram_hour h, hours
        WHERE h.bucket_start >= hours.first_hour AND h.bucket_start < hours.end_hour
        UNION ALL
        SELECT m.model_name, m.model_provider_name, m.le_ms, m.count
        FROM model_latency_histogram_minute m, hours
        WHERE m.bucket_start >= from_ts AND m.bucket_start < to_ts
          AND NOT (m.bucket_start >= hours.first_hour AND m.bucket_start < hours.end_hour)
    ) x
    GROUP BY 1, 2, 3
$$;

-- p50/p90/p99 latency (ms) of successful attempts per model and provider over [from_ts, to_ts).
CREATE FUNCTION lsd_model_latency_quantiles(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (
    model_name text, model_provider_name text, count bigint,
    p50_ms double precision, p90_ms double precision, p99_ms double precision
)
LANGUAGE sql STABLE AS $$
    SELECT model_name, model_provider_name, sum(count)::bigint,
           lsd_histogram_quantile(0.5, array_agg(le_ms ORDER BY le_ms), array_agg(count ORDER BY le_ms)),
           lsd_histogram_quantile(0.9, array_agg(le_ms ORDER BY le_ms), array_agg(count ORDER BY le_ms)),
           lsd_histogram_quantile(0.99, array_agg(le_ms ORDER BY le_ms), array_agg(count ORDER BY le_ms))
    FROM lsd_model_latency_histogram(from_ts, to_ts)
    GROUP BY model_name, model_provider_name
$$;

-- Mean and sample variance of each metric per variant.
CREATE VIEW variant_metric_summary AS
SELECT function_name, variant_name, metric_name, feedback_count,
       value_sum / feedback_count AS mean,
       CASE WHEN feedback_count > 1
            THEN greatest(value_sum_squares - value_sum * value_sum / feedback_count, 0) / (feedback_count - 1)
       END AS variance
FROM variant_metric_statistics
WHERE feedback_count > 0;
