-- Transfers in batches: many transfers, one statement, one transaction, one commit.
--
-- Every transfer commits once, and each commit waits for its WAL flush; on a small machine that flush,
-- not the work, bounds transfers per second. The service layer therefore gathers the transfers that
-- arrive while a batch is running and sends them together as one call of this function: n transfers
-- cost one round trip and one flush. Each transfer in the batch still succeeds or fails on its own.
--
-- Locking: before anything is read for a check, every account the batch touches is locked at once, in
-- ascending id order (LockRows sits above the Sort). Single transfers lock their two rows in the same
-- global order, so no interleaving of batches and single transfers can deadlock. Once locked, balances
-- are read and changed under the lock, transfer by transfer in the order given, so a later transfer of
-- the batch sees the balances the earlier ones left. CHECK (balance >= 0) stays the last line of defence.
--
-- The result has one row per input transfer, in input order, with the columns of queries/transfer.sql:
-- when a check fails nothing is written for that transfer and its row says which check failed (the
-- r_transfer_id column is NULL).
CREATE FUNCTION transfer_batch(
    from_ids bigint[],
    to_ids bigint[],
    amounts bigint[],
    callers bigint[],
    currencies text[],
    event_ids uuid[],
    traceparents text[],
    p_aggregate_type text,
    p_event_type text
) RETURNS TABLE (
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
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    i integer;
BEGIN
    PERFORM 1 FROM accounts WHERE id = ANY (from_ids || to_ids) ORDER BY id FOR NO KEY UPDATE;

    FOR i IN 1 .. coalesce(array_length(from_ids, 1), 0) LOOP
        r_from_owner_id := NULL; r_from_currency := NULL; r_from_balance := NULL; r_from_created_at := NULL;
        r_to_owner_id := NULL; r_to_currency := NULL; r_to_balance := NULL; r_to_created_at := NULL;
        r_transfer_id := NULL; r_transfer_created_at := NULL;
        r_from_balance_after := NULL; r_to_balance_after := NULL;
        r_from_entry_id := NULL; r_from_entry_created_at := NULL;
        r_to_entry_id := NULL; r_to_entry_created_at := NULL;

        SELECT a.owner_id, a.currency, a.balance, a.created_at
        INTO r_from_owner_id, r_from_currency, r_from_balance, r_from_created_at
        FROM accounts a WHERE a.id = from_ids[i];
        SELECT a.owner_id, a.currency, a.balance, a.created_at
        INTO r_to_owner_id, r_to_currency, r_to_balance, r_to_created_at
        FROM accounts a WHERE a.id = to_ids[i];

        IF r_from_owner_id = callers[i]
           AND r_to_owner_id IS NOT NULL
           AND from_ids[i] <> to_ids[i]
           AND r_from_currency = currencies[i] AND r_to_currency = currencies[i]
           AND r_from_balance >= amounts[i]
           AND r_to_balance <= 9223372036854775807 - amounts[i]
        THEN
            UPDATE accounts SET balance = balance - amounts[i] WHERE id = from_ids[i]
            RETURNING balance INTO r_from_balance_after;
            UPDATE accounts SET balance = balance + amounts[i] WHERE id = to_ids[i]
            RETURNING balance INTO r_to_balance_after;
            INSERT INTO transfers (from_account_id, to_account_id, amount, currency)
            VALUES (from_ids[i], to_ids[i], amounts[i], currencies[i])
            RETURNING id, created_at INTO r_transfer_id, r_transfer_created_at;
            INSERT INTO entries (account_id, amount, transfer_id)
            VALUES (from_ids[i], -amounts[i], r_transfer_id)
            RETURNING id, created_at INTO r_from_entry_id, r_from_entry_created_at;
            INSERT INTO entries (account_id, amount, transfer_id)
            VALUES (to_ids[i], amounts[i], r_transfer_id)
            RETURNING id, created_at INTO r_to_entry_id, r_to_entry_created_at;
            INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
            VALUES (event_ids[i], p_aggregate_type, r_transfer_id::text, p_event_type,
                    jsonb_build_object(
                        'transfer_id', r_transfer_id,
                        'from_account_id', from_ids[i],
                        'to_account_id', to_ids[i],
                        'from_owner_id', callers[i],
                        'to_owner_id', r_to_owner_id,
                        'amount', amounts[i],
                        'currency', currencies[i]),
                    NULLIF(traceparents[i], ''));
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;
