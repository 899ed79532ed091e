-- transfer_batch (20261202000002) trusts its caller to number the waves so that no account appears
-- twice in a wave. It checked only that every wave is 1 or more. A caller that got the numbering wrong
-- would not get an error: two credits of one account in one wave are one UPDATE of one row, which
-- Postgres applies once, while both transfers and all their entries are written, so the balance would no
-- longer equal the sum of its entries. The store is the only caller and its numbering is unit-tested,
-- but the ledger's invariants are the database's to enforce. This version refuses, before it locks or
-- writes anything, a batch in which two transfers of one wave share an account (a self-transfer counts
-- once: it is rejected per transfer, as before). Everything else is unchanged: same signature, same
-- result, same plan settings; see 20261202000002 for the waves, the locking and the result rows.
--
-- Measured with bench/sql/transfer-batch-8.sql (pgbench -c1 on this function, one wave of 8): the check
-- is one more query over the two arrays, a few microseconds against a batch's 1.5 to 2.3 ms.
CREATE OR REPLACE FUNCTION transfer_batch(
    from_ids bigint[],
    to_ids bigint[],
    amounts bigint[],
    callers bigint[],
    currencies text[],
    event_ids uuid[],
    traceparents text[],
    waves integer[],
    p_aggregate_type text,
    p_event_type text
) RETURNS TABLE (
    r_ord bigint,
    r_from_owner_id bigint,
    r_from_currency text,
    r_from_balance bigint,
    r_to_owner_id bigint,
    r_to_currency text,
    r_to_balance bigint,
    r_transfer_id bigint,
    r_transfer_created_at timestamptz,
    r_from_balance_after bigint,
    r_from_created_at timestamptz,
    r_to_balance_after bigint,
    r_to_created_at timestamptz,
    r_from_entry_id bigint,
    r_from_entry_created_at timestamptz,
    r_to_entry_id bigint,
    r_to_entry_created_at timestamptz
)
LANGUAGE plpgsql
-- The UPDATEs join a wave to accounts. While accounts is small (a new bank, the benchmark's 1,000 rows)
-- the planner prices a sequential scan of the whole table and a hash join below a handful of primary-key
-- lookups, and then every batch reads every account: measured, that made a batch of 3.6 transfers take
-- as long as one of 8. Primary-key lookups are right at any size, so the function plans without
-- sequential scans. That setting prices the one scan that has no alternative (the one-row relay_state,
-- read by the outbox trigger) so high that Postgres would JIT-compile it, 90 ms per call (measured), so
-- JIT is off too: nothing in here runs long enough to gain from it. Both settings last only while the
-- function runs.
SET enable_seqscan = off
SET jit = off
AS $$
#variable_conflict use_column
DECLARE
    last_wave integer := coalesce((SELECT max(x) FROM unnest(waves) AS x), 0);
    wave_no integer;
    w record;
BEGIN
    IF coalesce(array_length(waves, 1), 0) <> coalesce(array_length(from_ids, 1), 0)
       OR EXISTS (SELECT 1 FROM unnest(waves) AS x WHERE x IS NULL OR x < 1) THEN
        RAISE EXCEPTION 'transfer_batch: every transfer needs a wave of 1 or more';
    END IF;
    IF EXISTS (
        SELECT 1
        FROM unnest(from_ids, to_ids, waves) WITH ORDINALITY AS u(from_id, to_id, wave, ord)
        CROSS JOIN LATERAL (VALUES (u.from_id), (u.to_id)) AS side(account_id)
        GROUP BY u.wave, side.account_id
        HAVING count(DISTINCT u.ord) > 1
    ) THEN
        RAISE EXCEPTION 'transfer_batch: two transfers of one wave share an account';
    END IF;
    IF last_wave > 1 THEN
        PERFORM 1 FROM accounts WHERE id = ANY (from_ids || to_ids) ORDER BY id FOR NO KEY UPDATE;
    END IF;

    FOR wave_no IN 1 .. last_wave LOOP
        FOR w IN
        WITH input AS (
            SELECT *
            FROM unnest(from_ids, to_ids, amounts, callers, currencies, event_ids, traceparents, waves)
                WITH ORDINALITY AS u(from_id, to_id, amount, caller, cur, event_id, tp, wave, ord)
            WHERE u.wave = wave_no
        ), locked AS MATERIALIZED (
            SELECT a.id, a.owner_id, a.currency, a.balance, a.created_at
            FROM accounts a
            WHERE a.id = ANY (from_ids || to_ids)
            ORDER BY a.id
            FOR NO KEY UPDATE
        ), checked AS MATERIALIZED (
            SELECT i.*, s.owner_id AS s_owner, s.currency AS s_currency, s.balance AS s_balance,
                   s.created_at AS s_created, d.owner_id AS d_owner, d.currency AS d_currency,
                   d.balance AS d_balance, d.created_at AS d_created,
                   coalesce(s.owner_id = i.caller
                            AND d.id IS NOT NULL
                            AND i.from_id <> i.to_id
                            AND s.currency = i.cur AND d.currency = i.cur
                            AND s.balance >= i.amount
                            AND d.balance <= 9223372036854775807 - i.amount, false) AS ok
            FROM input i
            LEFT JOIN locked s ON s.id = i.from_id
            LEFT JOIN locked d ON d.id = i.to_id
        ), debit AS (
            UPDATE accounts a SET balance = a.balance - c.amount
            FROM checked c WHERE c.ok AND a.id = c.from_id
            RETURNING a.id, a.balance
        ), credit AS (
            UPDATE accounts a SET balance = a.balance + c.amount
            FROM checked c WHERE c.ok AND a.id = c.to_id
            RETURNING a.id, a.balance
        ), transfer AS (
            -- Matched back to its transfer by the source account, unique within a wave.
            INSERT INTO transfers (from_account_id, to_account_id, amount, currency)
            SELECT c.from_id, c.to_id, c.amount, c.cur FROM checked c WHERE c.ok ORDER BY c.ord
            RETURNING id, from_account_id, created_at
        ), entry_rows AS (
            INSERT INTO entries (account_id, amount, transfer_id)
            SELECT e.account_id, e.amount, e.transfer_id
            FROM checked c
            JOIN transfer t ON t.from_account_id = c.from_id
            CROSS JOIN LATERAL (VALUES (c.from_id, -c.amount, t.id, 1), (c.to_id, c.amount, t.id, 2))
                AS e(account_id, amount, transfer_id, side)
            ORDER BY c.ord, e.side
            RETURNING id, account_id, created_at
        ), event AS (
            INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
            SELECT c.event_id, p_aggregate_type, t.id::text, p_event_type,
                   jsonb_build_object(
                       'transfer_id', t.id,
                       'from_account_id', c.from_id,
                       'to_account_id', c.to_id,
                       'from_owner_id', c.caller,
                       'to_owner_id', c.d_owner,
                       'amount', c.amount,
                       'currency', c.cur),
                   NULLIF(c.tp, '')
            FROM checked c
            JOIN transfer t ON t.from_account_id = c.from_id
        )
        SELECT c.ord, c.ok, c.s_owner, c.s_currency, c.s_balance, c.d_owner, c.d_currency, c.d_balance,
               t.id AS transfer_id, t.created_at AS transfer_created,
               md.balance AS from_after, c.s_created, mc.balance AS to_after, c.d_created,
               fe.id AS from_entry, fe.created_at AS from_entry_created,
               te.id AS to_entry, te.created_at AS to_entry_created
        FROM checked c
        LEFT JOIN transfer t ON c.ok AND t.from_account_id = c.from_id
        LEFT JOIN debit md ON c.ok AND md.id = c.from_id
        LEFT JOIN credit mc ON c.ok AND mc.id = c.to_id
        LEFT JOIN entry_rows fe ON c.ok AND fe.account_id = c.from_id
        LEFT JOIN entry_rows te ON c.ok AND te.account_id = c.to_id
        LOOP
            -- A transfer that passed its checks must have been written whole. If a part is missing,
            -- abort the whole batch (nothing commits) instead of answering a half-written transfer.
            IF w.ok AND (w.transfer_id IS NULL OR w.from_after IS NULL OR w.to_after IS NULL
                         OR w.from_entry IS NULL OR w.to_entry IS NULL) THEN
                RAISE EXCEPTION 'transfer_batch: transfer % of the batch was not written whole', w.ord;
            END IF;
            r_ord := w.ord;
            r_from_owner_id := w.s_owner; r_from_currency := w.s_currency; r_from_balance := w.s_balance;
            r_from_created_at := w.s_created;
            r_to_owner_id := w.d_owner; r_to_currency := w.d_currency; r_to_balance := w.d_balance;
            r_to_created_at := w.d_created;
            r_transfer_id := w.transfer_id; r_transfer_created_at := w.transfer_created;
            r_from_balance_after := w.from_after; r_to_balance_after := w.to_after;
            r_from_entry_id := w.from_entry; r_from_entry_created_at := w.from_entry_created;
            r_to_entry_id := w.to_entry; r_to_entry_created_at := w.to_entry_created;
            RETURN NEXT;
        END LOOP;
    END LOOP;
END
$$;
