-- Batch inference, version 5: what a provider batch needs between submission and completion.
--
-- batch_requests keeps one row per batch (its latest status); batch_request_events keeps one row per status
-- change of the provider batch (submitted, then completed or failed), with the provider's raw answer, so the
-- history TensorZero keeps as one batch_requests row per status stays queryable.
--
-- Results are recorded exactly once: the transaction that records them first moves the batch_requests row
-- out of 'pending' (UPDATE ... WHERE status = 'pending' RETURNING id). A second replica or client racing it
-- blocks on that row lock, then finds the row no longer pending and records nothing.

-- What the provider needs to poll and read the batch later (e.g. OpenAI's input file id); never a key.
ALTER TABLE batch_requests ADD COLUMN provider_data jsonb NOT NULL DEFAULT '{}';
-- The provider's own status word at the last poll (e.g. in_progress, finalizing, expired).
ALTER TABLE batch_requests ADD COLUMN provider_status text;
-- The function's type at submission (chat | json): which inference table its results go to.
ALTER TABLE batch_requests ADD COLUMN function_type text NOT NULL DEFAULT 'chat';

CREATE TABLE batch_request_events (
    id uuid NOT NULL,                   -- UUIDv7 of the status change
    created_at timestamptz NOT NULL,
    batch_id uuid NOT NULL,
    status text NOT NULL,               -- pending | completed | failed
    provider_status text,
    raw_request text,
    raw_response text,
    errors jsonb,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);

CREATE INDEX batch_request_events_batch ON batch_request_events (batch_id);

INSERT INTO lsd_partitioned_tables (table_name) VALUES ('batch_request_events');

SELECT lsd_ensure_partitions((now() AT TIME ZONE 'UTC')::date - 1, 8);
