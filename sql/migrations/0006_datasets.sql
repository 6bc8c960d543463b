-- LSD schema, version 6: datasets — curated datapoints of chat and json functions (TensorZero's /v1/datasets API).
-- See docs/datasets.md. Small tables: not partitioned.
--
-- A datapoint is never edited in place: an update stales the row (staled_at) and inserts its successor under a new
-- id, as TensorZero does, so an evaluation result that names a datapoint id keeps naming what was evaluated. A
-- deletion stales the row too (and sets is_deleted). The live datapoints of a dataset are those with
-- staled_at IS NULL.

CREATE TABLE chat_datapoints (
    id uuid PRIMARY KEY,                -- UUIDv7
    dataset_name text NOT NULL,
    function_name text NOT NULL,
    name text,
    episode_id uuid,
    input jsonb NOT NULL,               -- as chat_inferences.input stores it: {"system"?, "messages": [...]}
    output jsonb,                       -- content blocks, as chat_inferences.output; NULL: no reference output
    tool_params jsonb,                  -- {"allowed_tools", "additional_tools", "tool_choice", "parallel_tool_calls", "provider_tools"}
    tags jsonb NOT NULL DEFAULT '{}',
    source_inference_id uuid,           -- the inference it was made from (POST .../from_inferences)
    is_custom boolean NOT NULL DEFAULT true,  -- false while it is an unedited copy of an inference
    is_deleted boolean NOT NULL DEFAULT false,
    staled_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK (dataset_name <> '')
);

CREATE TABLE json_datapoints (
    id uuid PRIMARY KEY,
    dataset_name text NOT NULL,
    function_name text NOT NULL,
    name text,
    episode_id uuid,
    input jsonb NOT NULL,
    output jsonb,                       -- {"raw": ..., "parsed": ...} (parsed is null when raw does not validate)
    output_schema jsonb,                -- the schema the output was checked against (the function's by default)
    tags jsonb NOT NULL DEFAULT '{}',
    source_inference_id uuid,
    is_custom boolean NOT NULL DEFAULT true,
    is_deleted boolean NOT NULL DEFAULT false,
    staled_at timestamptz,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK (dataset_name <> '')
);

-- Listing a dataset's live datapoints, newest or oldest first (ids are UUIDv7: id order is creation order).
CREATE INDEX chat_datapoints_dataset ON chat_datapoints (dataset_name, id) WHERE staled_at IS NULL;
CREATE INDEX json_datapoints_dataset ON json_datapoints (dataset_name, id) WHERE staled_at IS NULL;
CREATE INDEX chat_datapoints_source ON chat_datapoints (source_inference_id) WHERE source_inference_id IS NOT NULL;
CREATE INDEX json_datapoints_source ON json_datapoints (source_inference_id) WHERE source_inference_id IS NOT NULL;

-- Both kinds in one relation, for listing and for plain SQL:
--   SELECT id, type, input, output FROM datapoints WHERE dataset_name = 'golden' AND staled_at IS NULL ORDER BY id;
CREATE VIEW datapoints AS
    SELECT 'chat'::text AS type, id, dataset_name, function_name, name, episode_id, input, output, tool_params,
           NULL::jsonb AS output_schema, tags, source_inference_id, is_custom, is_deleted, staled_at, created_at,
           updated_at
    FROM chat_datapoints
    UNION ALL
    SELECT 'json'::text AS type, id, dataset_name, function_name, name, episode_id, input, output,
           NULL::jsonb AS tool_params, output_schema, tags, source_inference_id, is_custom, is_deleted, staled_at,
           created_at, updated_at
    FROM json_datapoints;
