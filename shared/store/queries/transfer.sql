-- One transfer, in one statement (and so one round trip and one implicit transaction).
--
-- $1 from_account_id, $2 to_account_id, $3 amount, $4 caller (must own the source), $5 currency,
-- $6 event id, $7 aggregate type, $8 event type, $9 traceparent.
--
-- `locked` takes the row locks, in ascending id order (LockRows sits above the Sort), before anything is
-- written: two transfers between the same pair in opposite directions queue on the lower id instead of
-- deadlocking. Under READ COMMITTED, FOR NO KEY UPDATE returns the newest committed version of each
-- row, so the balance checked in `checked` is the balance that the UPDATEs then change: the Go project's
-- unlocked read-then-write race cannot happen. CHECK (balance >= 0) stays as the last line of defence.
-- When a check fails nothing is written, and the final SELECT still returns one row that says why.
WITH locked AS MATERIALIZED (
    SELECT id, owner_id, currency, balance
    FROM accounts
    WHERE id IN ($1, $2)
    ORDER BY id
    FOR NO KEY UPDATE
), checked AS (
    SELECT s.id AS from_id, d.id AS to_id, d.owner_id AS to_owner
    FROM locked s JOIN locked d ON s.id = $1 AND d.id = $2
    WHERE s.owner_id = $4
      AND s.currency = $5 AND d.currency = $5
      AND s.balance >= $3::bigint
      AND d.balance <= 9223372036854775807 - $3::bigint
), debit AS (
    UPDATE accounts a SET balance = a.balance - $3::bigint
    FROM checked c WHERE a.id = c.from_id
    RETURNING a.balance, a.created_at
), credit AS (
    UPDATE accounts a SET balance = a.balance + $3::bigint
    FROM checked c WHERE a.id = c.to_id
    RETURNING a.owner_id, a.balance, a.created_at
), transfer AS (
    INSERT INTO transfers (from_account_id, to_account_id, amount, currency)
    SELECT from_id, to_id, $3::bigint, $5 FROM checked
    RETURNING id, created_at
), entry_rows AS (
    INSERT INTO entries (account_id, amount, transfer_id)
    SELECT c.from_id, -$3::bigint, t.id FROM checked c, transfer t
    UNION ALL
    SELECT c.to_id, $3::bigint, t.id FROM checked c, transfer t
    RETURNING id, account_id, created_at
), event AS (
    INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
    SELECT $6, $7, t.id::text, $8,
           jsonb_build_object(
               'transfer_id', t.id,
               'from_account_id', c.from_id,
               'to_account_id', c.to_id,
               'from_owner_id', $4::bigint,
               'to_owner_id', c.to_owner,
               'amount', $3::bigint,
               'currency', $5::text),
           $9
    FROM checked c, transfer t
)
SELECT s.owner_id AS "from_owner_id?", s.currency AS "from_currency?", s.balance AS "from_balance?",
       d.owner_id AS "to_owner_id?", d.currency AS "to_currency?", d.balance AS "to_balance?",
       t.id AS "transfer_id?", t.created_at AS "transfer_created_at?",
       db.balance AS "from_balance_after?", db.created_at AS "from_created_at?",
       cr.balance AS "to_balance_after?", cr.created_at AS "to_created_at?",
       fe.id AS "from_entry_id?", fe.created_at AS "from_entry_created_at?",
       te.id AS "to_entry_id?", te.created_at AS "to_entry_created_at?"
FROM (SELECT 1) AS one
LEFT JOIN locked s ON s.id = $1
LEFT JOIN locked d ON d.id = $2
LEFT JOIN transfer t ON true
LEFT JOIN debit db ON true
LEFT JOIN credit cr ON true
LEFT JOIN entry_rows fe ON fe.account_id = $1
LEFT JOIN entry_rows te ON te.account_id = $2
