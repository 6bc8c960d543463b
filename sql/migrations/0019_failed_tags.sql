-- LSD schema, version 19: an inference that got no answer keeps its tags, and its session counts it.
--
-- An inference whose every attempt failed (or whose client left before the answer) writes no inference row: its
-- tags (a session's lsd::session_id, the end user's `user`, the key's tensorzero::api_key_public_id) were lost,
-- so a session's failures and a user's refused turns could not be found. From this version each attempt of such an
-- inference holds the request's tags in model_inferences.tags (NULL on every other attempt: an answered inference's
-- tags are its row's). The statistics refresh counts them per session in session_statistics.failed_inference_count.

ALTER TABLE model_inferences ADD COLUMN tags jsonb;
-- Only unanswered inferences' attempts have tags: a small index that finds them by tag (a session's failures).
CREATE INDEX model_inferences_tags ON model_inferences USING gin (tags jsonb_path_ops) WHERE tags IS NOT NULL;

ALTER TABLE session_statistics ADD COLUMN failed_inference_count bigint NOT NULL DEFAULT 0;
