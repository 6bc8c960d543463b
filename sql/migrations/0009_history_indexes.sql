-- LSD schema, version 9: the latest value of each metric per target, so list queries that filter or order by a
-- metric read about as many rows as they return (docs/querying.md, docs/scaling.md).
--
-- The feedback tables keep every value, partitioned by feedback id; "the value of a metric for an inference" is the
-- latest one (highest feedback id). Finding it used to mean reading every feedback row of the metric. These two
-- small unpartitioned tables hold one row per (metric, level, target): the value with the highest feedback id.
-- A statement trigger on each feedback table folds every inserted batch in (COPY, INSERT, and the writer's
-- idempotent replay alike: only rows actually inserted are in the transition table), so the tables are exact in the
-- same transaction as the feedback. A row older than the one kept (a late replay) never overwrites it.
--
-- Indexes: the primary key answers "the value for this target" (filters); the two value indexes give the rows of
-- a metric in value order with ties by target id descending or ascending (ordering by a metric, either direction).
--
-- On a big existing installation the backfill below reads each feedback table once, in the migration's
-- transaction (10 s for 400k feedback rows on the busy 2-core development machine); creating the triggers makes
-- feedback inserts wait for the migration's commit. Retention prunes the rows of targets older than the cutoff
-- (lsd/store/retention.py).

CREATE TABLE boolean_metric_latest (
    metric_name text NOT NULL,
    target_level text NOT NULL,         -- inference | episode
    target_id uuid NOT NULL,
    value boolean NOT NULL,
    feedback_id uuid NOT NULL,          -- the boolean_metric_feedback row the value comes from
    PRIMARY KEY (metric_name, target_level, target_id)
);
CREATE INDEX boolean_metric_latest_value ON boolean_metric_latest (metric_name, target_level, value, target_id);
CREATE INDEX boolean_metric_latest_value_newest
    ON boolean_metric_latest (metric_name, target_level, value, target_id DESC);

CREATE TABLE float_metric_latest (
    metric_name text NOT NULL,
    target_level text NOT NULL,
    target_id uuid NOT NULL,
    value double precision NOT NULL,
    feedback_id uuid NOT NULL,
    PRIMARY KEY (metric_name, target_level, target_id)
);
CREATE INDEX float_metric_latest_value ON float_metric_latest (metric_name, target_level, value, target_id);
CREATE INDEX float_metric_latest_value_newest
    ON float_metric_latest (metric_name, target_level, value, target_id DESC);

CREATE FUNCTION lsd_keep_latest_boolean_metric() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO boolean_metric_latest AS l (metric_name, target_level, target_id, value, feedback_id)
    SELECT DISTINCT ON (metric_name, target_level, target_id) metric_name, target_level, target_id, value, id
    FROM inserted
    ORDER BY metric_name, target_level, target_id, id DESC
    ON CONFLICT (metric_name, target_level, target_id) DO UPDATE
        SET value = EXCLUDED.value, feedback_id = EXCLUDED.feedback_id
        WHERE l.feedback_id < EXCLUDED.feedback_id;
    RETURN NULL;
END
$$;

CREATE FUNCTION lsd_keep_latest_float_metric() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO float_metric_latest AS l (metric_name, target_level, target_id, value, feedback_id)
    SELECT DISTINCT ON (metric_name, target_level, target_id) metric_name, target_level, target_id, value, id
    FROM inserted
    ORDER BY metric_name, target_level, target_id, id DESC
    ON CONFLICT (metric_name, target_level, target_id) DO UPDATE
        SET value = EXCLUDED.value, feedback_id = EXCLUDED.feedback_id
        WHERE l.feedback_id < EXCLUDED.feedback_id;
    RETURN NULL;
END
$$;

CREATE TRIGGER boolean_metric_latest AFTER INSERT ON boolean_metric_feedback
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION lsd_keep_latest_boolean_metric();
CREATE TRIGGER float_metric_latest AFTER INSERT ON float_metric_feedback
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION lsd_keep_latest_float_metric();

INSERT INTO boolean_metric_latest (metric_name, target_level, target_id, value, feedback_id)
SELECT DISTINCT ON (metric_name, target_level, target_id) metric_name, target_level, target_id, value, id
FROM boolean_metric_feedback
ORDER BY metric_name, target_level, target_id, id DESC;

INSERT INTO float_metric_latest (metric_name, target_level, target_id, value, feedback_id)
SELECT DISTINCT ON (metric_name, target_level, target_id) metric_name, target_level, target_id, value, id
FROM float_metric_feedback
ORDER BY metric_name, target_level, target_id, id DESC;
