-- LSD schema, version 16: a new daily partition is created on its own and then attached, instead of
-- `CREATE TABLE ... PARTITION OF`. PARTITION OF takes an ACCESS EXCLUSIVE lock on the parent table: queued behind
-- any open transaction that reads the table (a long analytical query, the statistics refresh), it made every
-- insert and read of that table wait too, for as long as the oldest reader ran. ATTACH PARTITION takes SHARE
-- UPDATE EXCLUSIVE on the parent, which inserts and reads never wait for (nor it for them); the new table is
-- empty, so attaching it scans nothing. The parent's indexes and primary key are built on the partition by the
-- attach, as PARTITION OF built them; LIKE copies the columns' defaults, NOT NULL and CHECK constraints, storage
-- and compression (lz4 on the payload columns). Existing partitions are left as they are.
--
-- Concurrent calls (replicas starting together, `lsd migrate` beside a gateway's hourly upkeep) now take turns on a
-- transaction advisory lock, the key of the upkeep's own ('LSD' + 'part'): before, the second of two calls that
-- found the same partition missing failed on the catalog's unique index when the first committed.

CREATE OR REPLACE FUNCTION lsd_ensure_partitions(first_day date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    t text;
    d date;
    part text;
    created integer := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(21483651638325876);  -- lsd.store.admin.PARTITION_LOCK_KEY
    FOR t IN SELECT table_name FROM lsd_partitioned_tables ORDER BY table_name LOOP
        FOR i IN 0..days LOOP
            d := first_day + i;
            part := format('%s_p%s', t, to_char(d, 'YYYYMMDD'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED'
                    ' INCLUDING STORAGE INCLUDING COMPRESSION)',
                    part, t);
                EXECUTE format(
                    'ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                    t, part,
                    lsd_uuid7_floor(d::timestamp AT TIME ZONE 'UTC'),
                    lsd_uuid7_floor((d + 1)::timestamp AT TIME ZONE 'UTC'));
                created := created + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN created;
END
$$;
