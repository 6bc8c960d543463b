-- LSD schema, version 7: workflow evaluation runs and their episodes (TensorZero's POST /workflow_evaluation_run).
-- See docs/evaluations.md#workflow-evaluations.

-- A run: which variant each function uses for the run's episodes, and tags for their inferences.
CREATE TABLE workflow_evaluation_runs (
    id uuid PRIMARY KEY,                -- the run_id (UUIDv7)
    created_at timestamptz NOT NULL,
    variant_pins jsonb NOT NULL DEFAULT '{}',  -- {"function": "variant"}
    tags jsonb NOT NULL DEFAULT '{}',
    project_name text,
    display_name text,
    config_hash text                    -- the config the pins were checked against (config_snapshots)
);
CREATE INDEX workflow_evaluation_runs_project ON workflow_evaluation_runs (project_name, id)
    WHERE project_name IS NOT NULL;

-- An episode of a run. Its id is a UUIDv7 whose timestamp is the creation time plus 10^10 s, so an inference
-- can tell a run's episode from any other without a lookup.
CREATE TABLE workflow_evaluation_episodes (
    episode_id uuid PRIMARY KEY,
    run_id uuid NOT NULL REFERENCES workflow_evaluation_runs (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL,
    task_name text,
    tags jsonb NOT NULL DEFAULT '{}'    -- the episode's own, with tensorzero::workflow_evaluation_run_id
);
CREATE INDEX workflow_evaluation_episodes_run ON workflow_evaluation_episodes (run_id, episode_id);
