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
--   successful attempt (model_inference_data).
--
-- Rows written before keep both flags false and their copies: nothing to migrate, every row stays readable.
-- Read these payloads through the view inference_payloads, which rebuilds what was left out.

ALTER TABLE chat_inference_data ADD COLUMN rendered_input_is_input boolean NOT NULL DEFAULT false;
ALTER TABLE chat_inference_data ADD COLUMN original_response_is_raw boolean NOT NULL DEFAULT false;
ALTER TABLE json_inference_data ADD COLUMN rendered_input_is_input boolean NOT NULL DEFAULT false;
ALTER TABLE json_inference_data ADD COLUMN original_response_is_raw boolean NOT NULL DEFAULT false;

-- The raw response of an inference's successful attempt. Attempt ids are UUIDv7s made when the attempt started,
-- after the inference's id: the lower bound (an hour of margin, as the query API uses) prunes older partitions.
CREATE FUNCTION lsd_successful_raw_response(inference uuid) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT md.raw_response
    FROM model_inferences m
    JOIN model_inference_data md ON md.model_inference_id = m.id
    WHERE m.inference_id = inference AND m.status = 'ok'
      AND m.id >= lsd_uuid7_floor(lsd_uuid7_time(inference) - interval '1 hour')
      AND md.model_inference_id >= lsd_uuid7_floor(lsd_uuid7_time(inference) - interval '1 hour')
    ORDER BY m.attempt DESC
    LIMIT 1
$$;

-- Every chat and json inference's payloads as they were before this version: the one place that rebuilds a copy
-- left out (lsd.store.payloads reads it; so can your own SQL). original_response holds text as stored (U+0000
-- escaped, see lsd/store/escaping.py), like the column.
CREATE VIEW inference_payloads AS
SELECT 'chat'::text AS kind, d.inference_id, d.created_at,
       CASE WHEN d.rendered_input_is_input
            THEN (SELECT jsonb_build_object('system', i.input -> 'system', 'messages', i.input -> 'messages')
                  FROM chat_inferences i WHERE i.id = d.inference_id)
            ELSE d.rendered_input END AS rendered_input,
       d.extra_body, d.extra_headers,
       CASE WHEN d.original_response_is_raw THEN lsd_successful_raw_response(d.inference_id)
            ELSE d.original_response END AS original_response
FROM chat_inference_data d
UNION ALL
SELECT 'json'::text AS kind, d.inference_id, d.created_at,
       CASE WHEN d.rendered_input_is_input
            THEN (SELECT jsonb_build_object('system', i.input -> 'system', 'messages', i.input -> 'messages')
                  FROM json_inferences i WHERE i.id = d.inference_id)
            ELSE d.rendered_input END AS rendered_input,
       d.extra_body, d.extra_headers,
       CASE WHEN d.original_response_is_raw THEN lsd_successful_raw_response(d.inference_id)
            ELSE d.original_response END AS original_response
FROM json_inference_data d;
