-- LSD schema, version 1: every table LSD uses. See docs/schema.md for each column.
--
-- High-volume tables are range-partitioned by their UUIDv7 id, one partition per UTC day: a UUIDv7 starts
-- with its unix-millisecond timestamp, so id order is time order, a partition bound is the smallest UUIDv7
-- of a day, and a lookup by id prunes to one partition without a separate timestamp in the key.
-- Each also has created_at (the same instant, written by the gateway) for plain-SQL time filters.

-- ---------------------------------------------------------------------------------------------------------
-- Partition upkeep
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE lsd_partitioned_tables (
    table_name text PRIMARY KEY
);

-- The smallest UUIDv7 of an instant: 48-bit unix milliseconds, then zeros.
CREATE FUNCTION lsd_uuid7_floor(at timestamptz) RETURNS uuid
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (lpad(to_hex((extract(epoch FROM at) * 1000)::bigint), 12, '0') || '00000000000000000000')::uuid
$$;

-- The creation time carried in a UUIDv7.
CREATE FUNCTION lsd_uuid7_time(id uuid) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_timestamp(('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint / 1000.0)
$$;

-- Create the daily partitions of every partitioned table from `first_day` to `first_day + days`.
-- Returns how many partitions it created. Idempotent.
CREATE FUNCTION lsd_ensure_partitions(first_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    d date;
    part text;
    created integer := 0;
BEGIN
    FOR t IN SELECT table_name FROM lsd_partitioned_tables ORDER BY table_name LOOP
        FOR i IN 0..days LOOP
            d := first_day + i;
            part := format('%s_p%s', t, to_char(d, 'YYYYMMDD'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                    part, t,
                    lsd_uuid7_floor(d::timestamp AT TIME ZONE 'UTC'),
                    lsd_uuid7_floor((d + 1)::timestamp AT TIME ZONE 'UTC'));
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;

-- Every daily partition with its table and day, for doctor, retention and the docs' examples.
CREATE VIEW lsd_partitions AS
SELECT parent.relname::text AS table_name,
       child.relname::text AS partition_name,
       to_date(substring(child.relname FROM '_p(\d{8})$'), 'YYYYMMDD') AS day
FROM pg_inherits
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
JOIN lsd_partitioned_tables lpt ON lpt.table_name = parent.relname
WHERE child.relname ~ '_p\d{8}$';

-- ---------------------------------------------------------------------------------------------------------
-- Config, auth, rate limits, cache (not partitioned)
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE config_snapshots (
    hash text PRIMARY KEY,              -- SHA-256 (hex) of the TOML text
    config text NOT NULL,               -- the TOML exactly as on disk
    lsd_version text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    public_id text PRIMARY KEY,
    secret_sha256 bytea NOT NULL,       -- SHA-256 of the secret part; the secret itself is never stored
    description text,
    organization text,
    workspace text,
    created_at timestamptz NOT NULL DEFAULT now(),
    disabled_at timestamptz
);

CREATE TABLE rate_limit_buckets (
    rule_key text NOT NULL,             -- which rule and limit (e.g. a hash of the rule and 'tokens_per_minute')
    scope_key text NOT NULL,            -- which scope instance (tag values, API key public id)
    balance double precision NOT NULL,  -- tokens left in the bucket
    capacity double precision NOT NULL,
    refill_per_s double precision NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule_key, scope_key)
);

CREATE TABLE model_inference_cache (
    cache_key bytea PRIMARY KEY,        -- SHA-256 of the normalised provider request
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    output jsonb NOT NULL,              -- the content blocks
    raw_request text,
    raw_response text,
    input_tokens integer,
    output_tokens integer,
    finish_reason text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX model_inference_cache_created_at ON model_inference_cache (created_at);

-- ---------------------------------------------------------------------------------------------------------
-- Inferences (partitioned by id)
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE chat_inferences (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    function_name text NOT NULL,
    variant_name text NOT NULL,
    episode_id uuid NOT NULL,
    input jsonb NOT NULL,
    output jsonb NOT NULL,
    tool_params jsonb,
    inference_params jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '{}',
    processing_time_ms integer,
    ttft_ms integer,
    input_tokens integer,
    output_tokens integer,
    cost numeric,
    finish_reason text,
    cached boolean NOT NULL DEFAULT false,
    config_hash text,
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE json_inferences (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    function_name text NOT NULL,
    variant_name text NOT NULL,
    episode_id uuid NOT NULL,
    input jsonb NOT NULL,
    output jsonb NOT NULL,              -- {"raw": ..., "parsed": ...}
    output_schema jsonb,
    inference_params jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '{}',
    processing_time_ms integer,
    ttft_ms integer,
    input_tokens integer,
    output_tokens integer,
    cost numeric,
    finish_reason text,
    cached boolean NOT NULL DEFAULT false,
    config_hash text,
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE embedding_inferences (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    embedding_model_name text NOT NULL,
    model_provider_name text,
    input jsonb NOT NULL,               -- the list of input strings
    num_inputs integer NOT NULL,
    dimensions integer,
    embeddings jsonb,                   -- the vectors, when stored
    tags jsonb NOT NULL DEFAULT '{}',
    processing_time_ms integer,
    input_tokens integer,
    cost numeric,
    cached boolean NOT NULL DEFAULT false,
    config_hash text,
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

-- The payloads around an inference that queries rarely need: the messages as rendered by templates,
-- the request's extra_body/extra_headers, and the provider's original response.
CREATE TABLE chat_inference_data (
    inference_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    rendered_input jsonb,
    extra_body jsonb,
    extra_headers jsonb,
    original_response text,
    PRIMARY KEY (inference_id)
) PARTITION BY RANGE (inference_id);

CREATE TABLE json_inference_data (
    inference_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    rendered_input jsonb,
    extra_body jsonb,
    extra_headers jsonb,
    original_response text,
    PRIMARY KEY (inference_id)
) PARTITION BY RANGE (inference_id);

-- One row per provider attempt, failed attempts included.
CREATE TABLE model_inferences (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    inference_id uuid NOT NULL,
    inference_kind text NOT NULL,       -- chat | json | embedding | batch
    attempt smallint NOT NULL DEFAULT 1,
    function_name text,
    variant_name text,
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    provider_type text NOT NULL,
    status text NOT NULL,               -- ok | error
    error_kind text,
    error text,
    latency_ms integer,
    ttft_ms integer,
    input_tokens integer,
    output_tokens integer,
    cost numeric,
    finish_reason text,
    cached boolean NOT NULL DEFAULT false,
    streamed boolean NOT NULL DEFAULT false,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

-- Raw request and response of each attempt, with secrets replaced by [REDACTED].
CREATE TABLE model_inference_data (
    model_inference_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    inference_id uuid NOT NULL,
    raw_request text,
    raw_response text,
    request_headers jsonb,
    api_key_sha256 text,                -- tells keys apart without storing them
    PRIMARY KEY (model_inference_id)
) PARTITION BY RANGE (model_inference_id);

-- ---------------------------------------------------------------------------------------------------------
-- Batches (partitioned by id)
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE batch_requests (
    id uuid NOT NULL,                   -- the batch_id returned to the client
    created_at timestamptz NOT NULL,
    function_name text NOT NULL,
    variant_name text NOT NULL,
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    provider_type text NOT NULL,
    provider_batch_id text,
    status text NOT NULL,               -- pending | completed | failed
    num_inferences integer NOT NULL,
    raw_request text,
    raw_response text,
    errors jsonb,
    tags jsonb NOT NULL DEFAULT '{}',
    last_polled_at timestamptz,
    completed_at timestamptz,
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE batch_model_inferences (
    inference_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    batch_id uuid NOT NULL,
    function_name text NOT NULL,
    variant_name text NOT NULL,
    episode_id uuid NOT NULL,
    input jsonb NOT NULL,
    rendered_input jsonb,
    tool_params jsonb,
    inference_params jsonb NOT NULL DEFAULT '{}',
    output_schema jsonb,
    raw_request text,
    model_name text NOT NULL,
    model_provider_name text NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (inference_id)
) PARTITION BY RANGE (inference_id);

-- ---------------------------------------------------------------------------------------------------------
-- Feedback (partitioned by feedback id)
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE boolean_metric_feedback (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    target_id uuid NOT NULL,            -- an inference id or an episode id
    target_level text NOT NULL,         -- inference | episode
    metric_name text NOT NULL,
    value boolean NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE float_metric_feedback (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    target_id uuid NOT NULL,
    target_level text NOT NULL,
    metric_name text NOT NULL,
    value double precision NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE comment_feedback (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    target_id uuid NOT NULL,
    target_level text NOT NULL,
    value text NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE TABLE demonstration_feedback (
    id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    inference_id uuid NOT NULL,
    value jsonb NOT NULL,
    tags jsonb NOT NULL DEFAULT '{}',
    api_key_public_id text,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

-- ---------------------------------------------------------------------------------------------------------
-- Evaluations (not partitioned: small)
-- ---------------------------------------------------------------------------------------------------------
CREATE TABLE inference_evaluation_runs (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    evaluation_name text NOT NULL,
    function_name text NOT NULL,
    variant_name text,
    status text NOT NULL,               -- running | completed | failed
    config jsonb NOT NULL DEFAULT '{}',
    tags jsonb NOT NULL DEFAULT '{}',
    finished_at timestamptz
);

CREATE TABLE inference_evaluation_human_feedback (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    evaluation_run_id uuid NOT NULL REFERENCES inference_evaluation_runs (id) ON DELETE CASCADE,
    inference_id uuid NOT NULL,
    metric_name text NOT NULL,
    value jsonb NOT NULL,
    output jsonb,
    tags jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX inference_evaluation_human_feedback_run ON inference_evaluation_human_feedback (evaluation_run_id);

-- ---------------------------------------------------------------------------------------------------------
-- Indexes on partitioned tables (each partition inherits them)
-- ---------------------------------------------------------------------------------------------------------
CREATE INDEX chat_inferences_function ON chat_inferences (function_name, id);
CREATE INDEX chat_inferences_variant ON chat_inferences (function_name, variant_name, id);
CREATE INDEX chat_inferences_episode ON chat_inferences (episode_id);
CREATE INDEX chat_inferences_tags ON chat_inferences USING gin (tags jsonb_path_ops);
CREATE INDEX json_inferences_function ON json_inferences (function_name, id);
CREATE INDEX json_inferences_variant ON json_inferences (function_name, variant_name, id);
CREATE INDEX json_inferences_episode ON json_inferences (episode_id);
CREATE INDEX json_inferences_tags ON json_inferences USING gin (tags jsonb_path_ops);
CREATE INDEX embedding_inferences_model ON embedding_inferences (embedding_model_name, id);
CREATE INDEX model_inferences_inference ON model_inferences (inference_id);
CREATE INDEX model_inferences_model ON model_inferences (model_name, model_provider_name, id);
CREATE INDEX model_inference_data_inference ON model_inference_data (inference_id);
CREATE INDEX batch_requests_status ON batch_requests (status) WHERE status = 'pending';
CREATE INDEX batch_model_inferences_batch ON batch_model_inferences (batch_id);
CREATE INDEX boolean_metric_feedback_target ON boolean_metric_feedback (target_id, metric_name);
CREATE INDEX boolean_metric_feedback_metric ON boolean_metric_feedback (metric_name, id);
CREATE INDEX float_metric_feedback_target ON float_metric_feedback (target_id, metric_name);
CREATE INDEX float_metric_feedback_metric ON float_metric_feedback (metric_name, id);
CREATE INDEX comment_feedback_target ON comment_feedback (target_id);
CREATE INDEX demonstration_feedback_inference ON demonstration_feedback (inference_id);

INSERT INTO lsd_partitioned_tables (table_name) VALUES
    ('chat_inferences'), ('json_inferences'), ('embedding_inferences'),
    ('chat_inference_data'), ('json_inference_data'),
    ('model_inferences'), ('model_inference_data'),
    ('batch_requests'), ('batch_model_inferences'),
    ('boolean_metric_feedback'), ('float_metric_feedback'), ('comment_feedback'), ('demonstration_feedback');

-- Large payload columns compress with lz4 where the server was built with it (PostgreSQL >= 14 --with-lz4);
-- elsewhere they keep the server default (pglz). Partitions inherit the setting.
DO $$
DECLARE
    col record;
BEGIN
    FOR col IN
        SELECT c.table_name, c.column_name
        FROM information_schema.columns c
        JOIN lsd_partitioned_tables p ON p.table_name = c.table_name
        WHERE c.table_schema = current_schema() AND c.data_type IN ('jsonb', 'text')
          AND c.column_name IN ('input', 'output', 'rendered_input', 'original_response', 'raw_request',
                                'raw_response', 'embeddings', 'tool_params', 'value', 'output_schema')
    LOOP
        BEGIN
            EXECUTE format('ALTER TABLE %I ALTER COLUMN %I SET COMPRESSION lz4', col.table_name, col.column_name);
        EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
            RAISE NOTICE 'lz4 not available; % keeps the default compression', col.table_name;
        END;
    END LOOP;
END
$$;

-- The partitions for yesterday (rows replayed from a spool), today and the next 7 days.
SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, 8);
