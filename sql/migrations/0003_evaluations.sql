-- LSD schema, version 3: evaluation results, and the keys a human judgement is reused by. See docs/evaluations.md.

-- The summary `lsd evaluate` prints (per evaluator mean, 95% CI, n, failures; cost; wall time), once finished.
ALTER TABLE inference_evaluation_runs ADD COLUMN summary jsonb;
CREATE INDEX inference_evaluation_runs_name ON inference_evaluation_runs (evaluation_name, id);

-- One row per run, datapoint and evaluator: what was judged and the verdict.
CREATE TABLE inference_evaluation_results (
    id uuid PRIMARY KEY,
    created_at timestamptz NOT NULL,
    evaluation_run_id uuid NOT NULL REFERENCES inference_evaluation_runs (id) ON DELETE CASCADE,
    datapoint_id text NOT NULL,         -- the dataset line's `id` (or a hash of it), or the source inference id
    inference_id uuid,                  -- the evaluated inference; NULL when it failed
    evaluator_name text NOT NULL,
    metric_name text NOT NULL,          -- lsd::evaluation::<evaluation>::evaluator::<evaluator>
    value jsonb,                        -- true/false or a number; NULL when the evaluator (or the inference) failed
    source text NOT NULL,               -- evaluator | human (a person's judgement of this datapoint and output)
    error text,
    input jsonb NOT NULL,
    output jsonb,                       -- as stored in chat_inferences/json_inferences.output
    output_hash text,                   -- SHA-256 of the canonical output (see docs/evaluations.md)
    reference jsonb,                    -- the datapoint's reference output, if any
    feedback_id uuid,                   -- the boolean/float_metric_feedback row recording the value
    evaluator_inference_id uuid,        -- the judge's inference (llm_judge)
    UNIQUE (evaluation_run_id, datapoint_id, evaluator_name)
);

ALTER TABLE inference_evaluation_human_feedback
    ADD COLUMN datapoint_id text,
    ADD COLUMN evaluator_name text,
    ADD COLUMN output_hash text;
CREATE INDEX inference_evaluation_human_feedback_lookup
    ON inference_evaluation_human_feedback (metric_name, datapoint_id, output_hash, id);
