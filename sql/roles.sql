-- Least-privilege roles for LSD (docs/auth.md, "Database roles").
--
-- Run as the role that owns LSD's tables (the one that ran `lsd migrate`), after migrating, and again after
-- every later migration (it is idempotent; new tables get no privileges until it runs):
--     psql "$OWNER_URL" -v ON_ERROR_STOP=1 -f sql/roles.sql
-- Then give the roles passwords (not here, so none sits in a file): ALTER ROLE lsd_daemon PASSWORD '...';
--
-- lsd_daemon  what `lsd serve` needs, with `[gateway.database] disable_automatic_migrations = true`: read
--             everything, append observability rows (never rewrite or delete them), upsert its caches,
--             statistics and rate-limit buckets, read API keys (creating and disabling keys is the owner's:
--             `lsd keys`). It cannot create, alter or drop tables; daily partitions are created through
--             lsd_ensure_partitions, which runs with its owner's rights. Retention drops partitions, which
--             only the owner may do: leave `retention_days` unset where LSD connects as lsd_daemon.
-- lsd_analyst read-only: SELECT on every table (API keys without their secret digest), every session
--             read-only.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lsd_daemon') THEN
        CREATE ROLE lsd_daemon LOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'lsd_analyst') THEN
        CREATE ROLE lsd_analyst LOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO lsd_daemon', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO lsd_analyst', current_database());
END
$$;

ALTER ROLE lsd_analyst SET default_transaction_read_only = on;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO lsd_daemon, lsd_analyst;

-- The daemon: read and append everywhere, then take back what it must not do. Grants go to tables, views and
-- partitioned parents, not to partitions: rows are always reached through the parents, whose grants apply.
DO $$
DECLARE
    rel text;
BEGIN
    FOR rel IN
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v') AND NOT c.relispartition
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I TO lsd_daemon', rel);
        EXECUTE format('GRANT SELECT ON %I TO lsd_analyst', rel);
    END LOOP;
END
$$;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO lsd_daemon;
REVOKE INSERT, UPDATE, DELETE ON api_keys, schema_migrations, lsd_partitioned_tables FROM lsd_daemon;
REVOKE UPDATE, DELETE ON
    chat_inferences, json_inferences, embedding_inferences, chat_inference_data, json_inference_data,
    model_inferences, model_inference_data, boolean_metric_feedback, float_metric_feedback, comment_feedback,
    demonstration_feedback, inference_evaluation_human_feedback, inference_evaluation_results
FROM lsd_daemon;
-- Daily partitions are created by the owner's function on the daemon's behalf.
ALTER FUNCTION lsd_ensure_partitions(date, integer) SECURITY DEFINER SET search_path = public, pg_temp;

-- The analyst (SELECT granted above): everything but the digests of API key secrets.
REVOKE SELECT ON api_keys FROM lsd_analyst;
GRANT SELECT (public_id, description, organization, workspace, created_at, disabled_at) ON api_keys TO lsd_analyst;
