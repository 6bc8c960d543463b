-- LSD schema, version 20: an input's long strings stored once a day, across inferences. See docs/schema.md#input-strings.
--
-- An agent sends its whole conversation again at every step: step 10 of a tool loop holds the system prompt, the
-- first screenshot and every tool result of steps 1-9, and until now each step's `input` stored all of it again
-- (a 10-step loop with a 600 KB screenshot stored it ten times). From this version the gateway stores each long
-- string of an input (1,024 characters or more: a system prompt, a text block's text, a tool result, a file's base64
-- data) once a UTC day in `input_strings`, keyed by its SHA-256, and the input holds the key in the string's place:
--
-- - input_strings: (hash, inference_id, value). `hash` is the first 16 bytes of the string's SHA-256 (its UTF-8) as a
--   uuid; `inference_id` the first inference of that day to refer to it, which puts the row in that day's
--   partition, dropped by retention with the inferences that refer to it.
-- - chat_inferences.input_refs / json_inferences.input_refs: NULL, or the paths in `input` (comma-separated, as
--   jsonb's #> takes them after string_to_array: 'messages,3,content,0,result') whose value is such a key.
--
-- Read `input` through lsd_input(input, input_refs, id), which puts the strings back; rows with input_refs NULL
-- (all rows written before this version) read back as they are. `lsd_attempt_payload` and the view
-- `inference_payloads` read it so already.

CREATE TABLE input_strings (
    hash uuid NOT NULL,                 -- the first 16 bytes of the string's SHA-256
    inference_id uuid NOT NULL,         -- the first inference of the (UTC) day that referred to it: the partition key
    value text NOT NULL,
    PRIMARY KEY (hash, inference_id)
) PARTITION BY RANGE (inference_id);

DO $$
BEGIN
    ALTER TABLE input_strings ALTER COLUMN value SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    RAISE NOTICE 'lz4 not available; input_strings keeps the default compression';
END
$$;

INSERT INTO lsd_partitioned_tables (table_name) VALUES ('input_strings');

-- Yesterday through a week ahead, as for every table (the hourly upkeep goes on from there). Older days need none:
-- every row written before this version holds its strings inline, and a row that refers to a string finds it in
-- its own day. (lsd_ensure_partitions loops over every partitioned table: the others have these days already.)
SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, 8);

ALTER TABLE chat_inferences ADD COLUMN input_refs text[];
ALTER TABLE json_inferences ADD COLUMN input_refs text[];

-- `input` with each key at a path of `refs` replaced by its string, found in the referring row's own day (one
-- partition: the gateway stores a string in the day of the first inference that refers to it, and only that day's
-- inferences refer to it there). A key whose string is not found, or a value at a path that is not a key, stays as
-- it is. The messages are rebuilt in one pass (a jsonb_set of the whole input per key made a 300-step agent
-- session's input take 140 ms to read); a path of another shape is set on its own. Custom plans: the day's bounds
-- prune to one partition at planning (a generic plan initialised a scan of every day's partition).
CREATE FUNCTION lsd_expand_input(input jsonb, refs text[], inference uuid) RETURNS jsonb
LANGUAGE plpgsql STABLE PARALLEL SAFE SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    day_start timestamptz := date_trunc('day', lsd_uuid7_time(inference) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    low uuid := lsd_uuid7_floor(day_start);
    high uuid := lsd_uuid7_floor(day_start + interval '1 day');
    found jsonb;     -- path -> its string, for each ref whose string was found
    blocks jsonb;    -- 'i,j' (message, block) -> {"key": the block's field, "value": its string}
    touched jsonb;   -- 'i' -> true for each message with such a block
    other text;
    out jsonb := input;
BEGIN
    SELECT jsonb_object_agg(r.ref, v.value) INTO found
    FROM unnest(refs) AS r(ref)
    CROSS JOIN LATERAL (SELECT input #>> string_to_array(r.ref, ',') AS text) k
    CROSS JOIN LATERAL (
        SELECT CASE WHEN k.text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'
                    THEN k.text::uuid END AS key
    ) h
    CROSS JOIN LATERAL (
        SELECT s.value FROM input_strings s
        WHERE s.hash = h.key AND s.inference_id >= low AND s.inference_id < high LIMIT 1
    ) v
    WHERE v.value IS NOT NULL;
    IF found IS NULL THEN
        RETURN input;
    END IF;
    IF found ? 'system' THEN
        out := jsonb_set(out, '{system}', found -> 'system');
    END IF;
    SELECT jsonb_object_agg(x.p[2] || ',' || x.p[4], jsonb_build_object('key', x.p[5], 'value', e.value)),
           jsonb_object_agg(x.p[2], true)
    INTO blocks, touched
    FROM jsonb_each(found) e CROSS JOIN LATERAL (SELECT string_to_array(e.key, ',') AS p) x
    WHERE cardinality(x.p) = 5 AND x.p[1] = 'messages' AND x.p[3] = 'content';
    IF blocks IS NOT NULL AND jsonb_typeof(input -> 'messages') = 'array' THEN
        out := jsonb_set(out, '{messages}', (
            SELECT coalesce(jsonb_agg(
                CASE WHEN touched ? (m.i - 1)::text AND jsonb_typeof(m.message -> 'content') = 'array'
                THEN jsonb_set(m.message, '{content}', (
                    SELECT coalesce(jsonb_agg(
                        CASE WHEN blocks ? ((m.i - 1) || ',' || (b.j - 1))
                        THEN jsonb_set(b.block, ARRAY[blocks -> ((m.i - 1) || ',' || (b.j - 1)) ->> 'key'],
                                       blocks -> ((m.i - 1) || ',' || (b.j - 1)) -> 'value')
                        ELSE b.block END ORDER BY b.j), '[]'::jsonb)
                    FROM jsonb_array_elements(m.message -> 'content') WITH ORDINALITY AS b(block, j)))
                ELSE m.message END ORDER BY m.i), '[]'::jsonb)
            FROM jsonb_array_elements(input -> 'messages') WITH ORDINALITY AS m(message, i)));
    END IF;
    FOR other IN
        SELECT e.key FROM jsonb_each(found) e CROSS JOIN LATERAL (SELECT string_to_array(e.key, ',') AS p) x
        WHERE e.key <> 'system' AND NOT (cardinality(x.p) = 5 AND x.p[1] = 'messages' AND x.p[3] = 'content')
    LOOP
        out := jsonb_set(out, string_to_array(other, ','), found -> other);
    END LOOP;
    RETURN out;
END
$$;

-- An inference's input as it was sent: what every reader of chat_inferences.input / json_inferences.input uses.
CREATE FUNCTION lsd_input(input jsonb, refs text[], inference uuid) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN refs IS NULL THEN input ELSE lsd_expand_input(input, refs, inference) END
$$;

-- As in version 12, the raw payload's references resolved against the input with its strings put back: only when
-- the payload refers to the input (U+E001 'i'...); a raw response's references are to the output.
CREATE OR REPLACE FUNCTION lsd_attempt_payload(raw text, refs boolean, inference uuid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN NOT refs OR raw IS NULL THEN raw ELSE (
        SELECT lsd_expand_payload(raw, i.input, i.output) FROM (
            SELECT CASE WHEN strpos(raw, U&'\E001i') > 0 THEN lsd_input(c.input, c.input_refs, c.id) ELSE c.input END
                   AS input, c.output
            FROM chat_inferences c WHERE c.id = inference
            UNION ALL
            SELECT CASE WHEN strpos(raw, U&'\E001i') > 0 THEN lsd_input(j.input, j.input_refs, j.id) ELSE j.input END,
                   j.output
            FROM json_inferences j WHERE j.id = inference
        ) i LIMIT 1)
    END
$$;

CREATE OR REPLACE VIEW inference_payloads AS
SELECT 'chat'::text AS kind, i.id AS inference_id, i.created_at,
       CASE WHEN d.inference_id IS NULL OR d.rendered_input_is_input
            THEN (SELECT jsonb_build_object('system', x.input -> 'system', 'messages', x.input -> 'messages')
                  FROM (SELECT lsd_input(i.input, i.input_refs, i.id) AS input) x)
            ELSE d.rendered_input END AS rendered_input,
       d.extra_body, d.extra_headers,
       CASE WHEN d.inference_id IS NULL OR d.original_response_is_raw THEN lsd_successful_raw_response(i.id)
            ELSE d.original_response END AS original_response
FROM chat_inferences i LEFT JOIN chat_inference_data d ON d.inference_id = i.id
UNION ALL
SELECT 'json'::text AS kind, i.id AS inference_id, i.created_at,
       CASE WHEN d.inference_id IS NULL OR d.rendered_input_is_input
            THEN (SELECT jsonb_build_object('system', x.input -> 'system', 'messages', x.input -> 'messages')
                  FROM (SELECT lsd_input(i.input, i.input_refs, i.id) AS input) x)
            ELSE d.rendered_input END AS rendered_input,
       d.extra_body, d.extra_headers,
       CASE WHEN d.inference_id IS NULL OR d.original_response_is_raw THEN lsd_successful_raw_response(i.id)
            ELSE d.original_response END AS original_response
FROM json_inferences i LEFT JOIN json_inference_data d ON d.inference_id = i.id;
