-- What the wave check of transfer_batch (migrations/20261202000003_transfer_batch_rejects_bad_waves.sql)
-- costs the server, for batches of 8 and 32 transfers in one wave with no shared account (the check
-- passes, as it does for every batch the store sends). It runs the check's query in a PL/pgSQL loop, so
-- the figure is server time alone, no round trip; compare it with a batch's latency from
-- bench/sql/transfer-batch-8.sql. Needs no tables:
--   psql -X -q -h 127.0.0.1 -U postgres -d postgres -f bench/sql/wave-check-cost.sql
DO $$
DECLARE
    n        integer;
    reps     constant integer := 20000;
    from_ids bigint[];
    to_ids   bigint[];
    waves    integer[];
    shared   boolean;
    started  timestamptz;
BEGIN
    FOREACH n IN ARRAY ARRAY[8, 32] LOOP
        from_ids := ARRAY(SELECT g::bigint FROM generate_series(1, n) g);
        to_ids := ARRAY(SELECT (g + 1000)::bigint FROM generate_series(1, n) g);
        waves := array_fill(1, ARRAY[n]);
        started := clock_timestamp();
        FOR i IN 1..reps LOOP
            -- The statement of the migration, word for word.
            shared := EXISTS (
                SELECT 1
                FROM unnest(from_ids, to_ids, waves) WITH ORDINALITY AS u(from_id, to_id, wave, ord)
                CROSS JOIN LATERAL (VALUES (u.from_id), (u.to_id)) AS side(account_id)
                GROUP BY u.wave, side.account_id
                HAVING count(DISTINCT u.ord) > 1
            );
        END LOOP;
        IF shared THEN
            RAISE EXCEPTION 'the test batch shares an account';
        END IF;
        RAISE NOTICE 'wave check, % transfers: % us per batch', n,
            round((extract(epoch FROM clock_timestamp() - started) * 1e6 / reps)::numeric, 1);
    END LOOP;
END
$$;
