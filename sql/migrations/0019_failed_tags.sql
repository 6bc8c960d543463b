-- LSD schema, version 19: an inference that got no answer keeps its tags, and its session counts it.
--
-- An inference whose every attempt failed (or whose client left before the answer) writes no inference row: its
-- tags (a session's lsd::session_id, the end user's `user`, the key's tensorzero::api_key_public_id) were lost,
-- so a session's failures and a user's refused turns could not be found. From this version each attempt of such an
-- inference holds the request's tags in model_inferences.tags (NULL on every other attempt: an answered inference's
-- tags are its row's). The statistics refresh counts them per session in session_statistics.failed_inference_count.

ALTER TABLE model_inferences ADD COLUMN tags jsonb;

-- Only unanswered inferences' attempts have tags: a small index that finds them by tag (a session's failures). Built
-- on the empty partitions (the days ahead) and on every partition attached from now on, not on those holding rows:
-- every row there has no tags, and a build would scan them all while blocking the writer's inserts (minutes on a
-- large history). A lookup in such a partition reads the attempts of its id range instead. The parent's index stays
-- marked invalid (PostgreSQL's way for an index some partitions lack); queries use each partition's own.
CREATE INDEX model_inferences_tags ON ONLY model_inferences USING gin (tags jsonb_path_ops) WHERE tags IS NOT NULL;
DO $$
DECLARE
    part regclass;
    empty boolean;
    name text;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'model_inferences'::regclass LOOP
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %s)', part) INTO empty;
        IF empty THEN
            name := left(replace(part::text, '"', ''), 58) || '_tags';
            EXECUTE format('CREATE INDEX %I ON %s USING gin (tags jsonb_path_ops) WHERE tags IS NOT NULL', name, part);
            EXECUTE format('ALTER INDEX model_inferences_tags ATTACH PARTITION %I', name);
        END IF;
    END LOOP;
END
$$;

ALTER TABLE session_statistics ADD COLUMN failed_inference_count bigint NOT NULL DEFAULT 0;
