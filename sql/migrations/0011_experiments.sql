-- LSD schema, version 11: adaptive experiments' allocations (docs/experiments.md, "## Experimentation").
--
-- One row per function with an adaptive `[functions.F.experimentation]`: the sampling weights every replica
-- uses, written by whichever replica holds the experiments lock at an update (lsd/jobs/experiments.py) and read
-- by all of them each period. A stopped experiment keeps its row (winner, stopped_at, the evidence it stopped on)
-- until its config changes (`fingerprint`), which starts it over.
CREATE TABLE experiment_allocations (
    function_name text PRIMARY KEY,
    weights jsonb NOT NULL,                     -- {"variant": weight}, summing to 1 over the candidates
    phase text NOT NULL CHECK (phase IN ('explore', 'bandit', 'stopped')),
    evidence jsonb NOT NULL DEFAULT '{}',       -- {"variant": {count, mean, lower, upper, eliminated, p_best}}
    stopped boolean NOT NULL DEFAULT false,
    winner text,
    stopped_at timestamptz,
    fingerprint text NOT NULL,                  -- the experiment keys this allocation was computed for
    updated_at timestamptz NOT NULL
);
