-- LSD schema, version 12: each payload stored once (issue 22). See docs/schema.md#payloads-stored-once.
--
-- Until now an inference's prompt was stored in chat_inferences.input, again in chat_inference_data.rendered_input
-- (the messages as sent, equal to the input when no template rewrote them) and in the attempt's raw_request; its
-- answer in output, in original_response and in the attempt's raw_response (always the same text). From this version
-- the gateway leaves out the copies that can be rebuilt and says so with a flag:
--
-- - rendered_input_is_input: rendered_input is NULL because the rendered messages were the input's own
--   ({"system": input.system, "messages": input.messages});
-- - original_response_is_raw: original_response is NULL because it was the raw_response of the inference's
--   successful attempt (model_inference_data);
-- - model_inference_data.payload_refs: raw_request and raw_response hold, in place of each long text of the
--   inference's input (in the request) and output (in the response) found in them as a JSON string, a reference
--   U+E001 <i|o><path> U+E001, e.g. U+E001 'imessages,0,content,0,text' U+E001: the text at that path of
--   chat/json_inferences.input (i) or .output (o), JSON-escaped as PostgreSQL's to_json (and orjson) escape it.
--
-- When a data row would hold nothing else (no extra_body, extra_headers), it is not written at all.
-- Rows written before keep the flags false and their copies: nothing to migrate, every row stays readable.
-- Read these payloads through the views inference_payloads and model_inference_payloads, which rebuild them.

ALTER TABLE chat_inference_data ADD COLUMN rendered_input_is_input boolean NOT NULL DEFAULT false;
ALTER TABLE chat_inference_data ADD COLUMN original_response_is_raw boolean NOT NULL DEFAULT false;
ALTER TABLE json_inference_data ADD COLUMN rendered_input_is_input boolean NOT NULL DEFAULT false;
ALTER TABLE json_inference_data ADD COLUMN original_response_is_raw boolean NOT NULL DEFAULT false;
ALTER TABLE model_inference_data ADD COLUMN payload_refs boolean NOT NULL DEFAULT false;

-- `raw` with each reference replaced by the JSON-escaped text it names in `input` or `output` (see above).
CREATE FUNCTION lsd_expand_payload(raw text, input jsonb, output jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    done text := '';
    rest text := raw;
    start integer;
    stop integer;
    ref text;
    value text;
BEGIN
    IF raw IS NULL THEN
        RETURN NULL;
    END IF;
    LOOP
        start := strpos(rest, U&'\E001');
        EXIT WHEN start = 0;
        stop := strpos(substr(rest, start + 1), U&'\E001');
        EXIT WHEN stop = 0;
        ref := substr(rest, start + 1, stop - 1);
        value := to_json(CASE left(ref, 1) WHEN 'i' THEN input ELSE output END
                         #>> string_to_array(substr(ref, 2), ','))::text;
        done := done || left(rest, start - 1) || substr(value, 2, length(value) - 2);
        rest := substr(rest, start + stop + 1);
    END LOOP;
    RETURN done || rest;
END
$$;

-- An attempt's raw_request or raw_response as it crossed the wire: `raw` itself unless `refs` (payload_refs).
CREATE FUNCTION lsd_attempt_payload(raw text, refs boolean, inference uuid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN NOT refs OR raw IS NULL THEN raw ELSE (
        SELECT lsd_expand_payload(raw, i.input, i.output) FROM (
            SELECT c.input, c.output FROM chat_inferences c WHERE c.id = inference
            UNION ALL
            SELECT j.input, j.output FROM json_inferences j WHERE j.id = inference
        ) i LIMIT 1)
    END
$$;

-- Every attempt's payloads as they crossed the wire (text as stored: U+0000 escaped, see lsd/store/escaping.py).
CREATE VIEW model_inference_payloads AS
SELECT d.model_inference_id, d.inference_id, d.created_at,
       lsd_attempt_payload(d.raw_request, d.payload_refs, d.inference_id) AS raw_request,
       lsd_attempt_payload(d.raw_response, d.payload_refs, d.inference_id) AS raw_response,
       d.request_headers, d.api_key_sha256
FROM model_inference_data d;

-- The raw response of an inference's successful attempt. Attempt ids are UUIDv7s made when the attempt started,
-- after the inference's id: the lower bound (an hour of margin, as the query API uses) prunes older partitions.
CREATE FUNCTION lsd_successful_raw_response(inference uuid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT lsd_attempt_payload(md.raw_response, md.payload_refs, inference)
    FROM model_inferences m
    JOIN model_inference_data md ON md.model_inference_id = m.id
    WHERE m.inference_id = inference AND m.status = 'ok'
      AND m.id >= lsd_uuid7_floor(lsd_uuid7_time(inference) - interval '1 hour')
      AND md.model_inference_id >= lsd_uuid7_floor(lsd_uuid7_time(inference) - interval '1 hour')
    ORDER BY m.attempt DESC
    LIMIT 1
$$;

-- Every chat and json inference's payloads as they were before this version: the one place that rebuilds a copy
-- left out (lsd.store.payloads reads it; so can your own SQL). An inference without a data row (the gateway writes
-- none when both copies are left out and there is no extra_body or extra_headers) reads as both flags set.
-- original_response holds text as stored (U+0000 escaped, see lsd/store/escaping.py), like the column.
CREATE VIEW inference_payloads AS
SELECT 'chat'::text AS kind, i.id AS inference_id, i.created_at,
       CASE WHEN d.inference_id IS NULL OR d.rendered_input_is_input
            THEN jsonb_build_object('system', i.input -> 'system', 'messages', i.input -> 'messages')
            ELSE d.rendered_input END AS rendered_input,
       d.extra_body, d.extra_headers,
       CASE WHEN d.inference_id IS NULL OR d.original_response_is_raw THEN lsd_successful_raw_response(i.id)
            ELSE d.original_response END AS original_response
FROM chat_inferences i LEFT JOIN chat_inference_data d ON d.inference_id = i.id
UNION ALL
SELECT 'json'::text AS kind, i.id AS inference_id, i.created_at,
       CASE WHEN d.inference_id IS NULL OR d.rendered_input_is_input
            THEN jsonb_build_object('system', i.input -> 'system', 'messages', i.input -> 'messages')
            ELSE d.rendered_input END AS rendered_input,
       d.extra_body, d.extra_headers,
       CASE WHEN d.inference_id IS NULL OR d.original_response_is_raw THEN lsd_successful_raw_response(i.id)
            ELSE d.original_response END AS original_response
FROM json_inferences i LEFT JOIN json_inference_data d ON d.inference_id = i.id;
