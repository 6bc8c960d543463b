-- LSD schema, version 4: API key revocation notices and atomic multi-bucket rate limiting.
-- See docs/auth.md and docs/rate-limiting.md.

-- ---------------------------------------------------------------------------------------------------------
-- API keys: every change that can revoke a key (disable, delete, a new secret) is announced on the
-- `lsd_api_keys` channel with the key's public id, so every replica drops it from its cache at once.
-- ---------------------------------------------------------------------------------------------------------
CREATE FUNCTION lsd_api_keys_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('lsd_api_keys', OLD.public_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_revoke
AFTER UPDATE OR DELETE ON api_keys
FOR EACH ROW EXECUTE FUNCTION lsd_api_keys_notify();

-- ---------------------------------------------------------------------------------------------------------
-- Rate limiting: one call takes from (or gives back to) several token buckets, all of them or none.
--
-- For bucket i: the balance refills at refill_per_s[i] up to capacity[i] since its updated_at, then
-- give_back[i] is added (negative: a forced debit, e.g. tokens used beyond the estimate; the balance may go
-- below zero, a debt later refills repay). The call succeeds when every bucket then holds at least need[i];
-- it takes least(want[i], balance) from each (want >= need: a lease). On failure nothing is taken (given-back
-- amounts are kept). Rows are locked in key order, so concurrent calls never deadlock. `at` NULL means the
-- database's clock_timestamp() (one clock for every replica); tests pass their own time.
-- The call's transaction commits without waiting for its WAL flush (synchronous_commit off, this transaction
-- only): a PostgreSQL crash may forget the last fraction of a second of consumption, never corrupt a bucket.
-- ---------------------------------------------------------------------------------------------------------
CREATE FUNCTION lsd_rate_limit_take(
    p_rule_keys text[],
    p_scope_keys text[],
    p_capacities double precision[],
    p_refill_per_s double precision[],
    p_give_back double precision[],
    p_need double precision[],
    p_want double precision[],
    p_at timestamptz DEFAULT NULL
) RETURNS TABLE (ok boolean, taken double precision[], balances double precision[])
LANGUAGE plpgsql AS $$
DECLARE
    t timestamptz := coalesce(p_at, clock_timestamp());
    n integer := coalesce(array_length(p_rule_keys, 1), 0);
    bal double precision[] := array_fill(0::double precision, ARRAY[n]);
    got double precision[] := array_fill(0::double precision, ARRAY[n]);
    all_ok boolean := true;
    r record;
BEGIN
    PERFORM set_config('synchronous_commit', 'off', true);
    IF n = 0 THEN
        RETURN QUERY SELECT true, ARRAY[]::double precision[], ARRAY[]::double precision[];
        RETURN;
    END IF;
    INSERT INTO rate_limit_buckets (rule_key, scope_key, balance, capacity, refill_per_s, updated_at)
    SELECT k.rule_key, k.scope_key, k.capacity, k.capacity, k.refill, t
    FROM unnest(p_rule_keys, p_scope_keys, p_capacities, p_refill_per_s) AS k(rule_key, scope_key, capacity, refill)
    ON CONFLICT (rule_key, scope_key) DO NOTHING;
    FOR r IN
        SELECT i, b.balance, b.updated_at
        FROM generate_subscripts(p_rule_keys, 1) AS i
        JOIN rate_limit_buckets b ON b.rule_key = p_rule_keys[i] AND b.scope_key = p_scope_keys[i]
        ORDER BY b.rule_key, b.scope_key
        FOR UPDATE OF b
    LOOP
        bal[r.i] := least(
            p_capacities[r.i],
            r.balance + p_refill_per_s[r.i] * greatest(0, extract(epoch FROM t - r.updated_at))
        ) + p_give_back[r.i];
        bal[r.i] := least(bal[r.i], p_capacities[r.i]);
        IF bal[r.i] < p_need[r.i] THEN
            all_ok := false;
        END IF;
    END LOOP;
    IF all_ok THEN
        FOR i IN 1..n LOOP
            got[i] := greatest(p_need[i], least(p_want[i], bal[i]));
            bal[i] := bal[i] - got[i];
        END LOOP;
    END IF;
    UPDATE rate_limit_buckets b
    SET balance = bal[k.i], capacity = p_capacities[k.i], refill_per_s = p_refill_per_s[k.i],
        updated_at = greatest(b.updated_at, t)
    FROM generate_subscripts(p_rule_keys, 1) AS k(i)
    WHERE b.rule_key = p_rule_keys[k.i] AND b.scope_key = p_scope_keys[k.i];
    RETURN QUERY SELECT all_ok, got, bal;
END
$$;
