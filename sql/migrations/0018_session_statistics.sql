-- LSD schema, version 18: one row of totals per agent session. See docs/querying.md#sessions.
--
-- An inference belongs to a session when it carries the tag lsd::session_id: the OpenAI and Anthropic routes set it
-- from the x-session-id (opencode), session-id (Codex) and x-claude-code-session-id (Claude Code) headers, and any
-- client may set it as a tag. The statistics refresh (lsd/store/statistics.py) folds new chat and json inferences
-- into session_statistics as it folds them into the other statistics: exact, incremental, each row once.
--
-- `models` are the names a session's inferences were answered under: the variant's name for the default function
-- (the model a client named, e.g. `tensorzero::model_name::gpt-4o` gives `gpt-4o`), else `function/variant`.

CREATE TABLE session_statistics (
    session_id text PRIMARY KEY,                    -- the tag lsd::session_id
    parent_session_id text,                         -- the tag lsd::parent_session_id (a subagent's parent), if any
    first_seen timestamptz NOT NULL,                -- the earliest inference's created_at
    last_seen timestamptz NOT NULL,                 -- the latest inference's created_at
    inference_count bigint NOT NULL,
    input_tokens bigint NOT NULL,                   -- NULL token counts count as 0
    output_tokens bigint NOT NULL,
    cost numeric NOT NULL,                          -- NULL costs count as 0: see priced_count
    priced_count bigint NOT NULL,                   -- inferences with a cost (0: the cost is unknown, not zero)
    processing_time_ms_sum bigint NOT NULL,
    models text[] NOT NULL,                         -- sorted, distinct (see above)
    api_key_public_ids text[] NOT NULL,             -- sorted, distinct; empty without authentication
    users text[] NOT NULL                           -- the tag `user` (the body's `user`, a chat UI's user id)
);
CREATE INDEX session_statistics_last_seen ON session_statistics (last_seen DESC, session_id DESC);
CREATE INDEX session_statistics_parent ON session_statistics (parent_session_id, first_seen)
    WHERE parent_session_id IS NOT NULL;
CREATE INDEX session_statistics_keys ON session_statistics USING gin (api_key_public_ids);
CREATE INDEX session_statistics_users ON session_statistics USING gin (users);

-- A session tag's value as a session id (or a user): NULL when longer than 512 characters
-- (lsd.sessions.MAX_SESSION_ID_CHARS; the gateway refuses such a session header), as a btree key holds at most 2,704
-- bytes: such an inference is in no session (or has no parent, or no user) rather than stopping every refresh.
CREATE FUNCTION lsd_session_tag(tags jsonb, tag text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN length(tags ->> tag) <= 512 THEN tags ->> tag END
$$;

-- A session's model name for one inference (see above).
CREATE FUNCTION lsd_session_model(function_name text, variant_name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN function_name = 'tensorzero::default' THEN variant_name
                ELSE function_name || '/' || variant_name END
$$;

-- The sorted union of two text arrays, without NULLs.
CREATE FUNCTION lsd_sorted_union(a text[], b text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT x ORDER BY x), '{}') FROM unnest(a || b) AS u(x) WHERE x IS NOT NULL
$$;

-- The inferences the statistics already counted (visible in the last refresh's snapshot) are folded in here; the
-- next refresh folds in the rest. Nothing is counted when the statistics were never refreshed: the first refresh
-- counts everything.
INSERT INTO session_statistics
SELECT lsd_session_tag(i.tags, 'lsd::session_id'), max(lsd_session_tag(i.tags, 'lsd::parent_session_id')),
       min(i.created_at), max(i.created_at),
       count(*), coalesce(sum(i.input_tokens), 0), coalesce(sum(i.output_tokens), 0), coalesce(sum(i.cost), 0),
       count(i.cost), coalesce(sum(i.processing_time_ms), 0),
       array_agg(DISTINCT lsd_session_model(i.function_name, i.variant_name) ORDER BY
                 lsd_session_model(i.function_name, i.variant_name)),
       coalesce(array_agg(DISTINCT i.api_key_public_id ORDER BY i.api_key_public_id)
                FILTER (WHERE i.api_key_public_id IS NOT NULL), '{}'),
       coalesce(array_agg(DISTINCT lsd_session_tag(i.tags, 'user') ORDER BY lsd_session_tag(i.tags, 'user'))
                FILTER (WHERE lsd_session_tag(i.tags, 'user') IS NOT NULL), '{}')
FROM (
    SELECT c.tags, c.function_name, c.variant_name, c.created_at, c.input_tokens, c.output_tokens, c.cost,
           c.processing_time_ms, c.api_key_public_id
    FROM chat_inferences c, statistics_watermarks w
    WHERE w.source_table = 'chat_inferences' AND pg_visible_in_snapshot(c.ingest_xid, w.last_snapshot)
      AND lsd_session_tag(c.tags, 'lsd::session_id') IS NOT NULL
    UNION ALL
    SELECT j.tags, j.function_name, j.variant_name, j.created_at, j.input_tokens, j.output_tokens, j.cost,
           j.processing_time_ms, j.api_key_public_id
    FROM json_inferences j, statistics_watermarks w
    WHERE w.source_table = 'json_inferences' AND pg_visible_in_snapshot(j.ingest_xid, w.last_snapshot)
      AND lsd_session_tag(j.tags, 'lsd::session_id') IS NOT NULL
) i
GROUP BY 1;
