-- Partitioned streams (STREAM_PARTITIONS): every outbox row records the stable hash of the aggregate
-- whose order it must keep, and a relay leading partition p of P claims the rows with
-- partition_key % P = p. The aggregate is the source account for a transfer (so an account's opening,
-- its deposits and the transfers out of it share a partition and keep their order), else the row's own
-- aggregate (the user for user events). A generated column, so that no writer, and no statement that
-- writes the outbox, has to know about partitions; hashtextextended is immutable, and the hash is
-- masked to a non-negative integer.
ALTER TABLE outbox ADD COLUMN partition_key integer NOT NULL GENERATED ALWAYS AS (
    (hashtextextended(
        CASE WHEN aggregate_type = 'transfer' AND payload ? 'from_account_id'
             THEN 'account:' || (payload ->> 'from_account_id')
             ELSE aggregate_type || ':' || aggregate_id
        END, 0) & 2147483647)::integer
) STORED;

-- One wake-up flag per partition (row id = partition + 1, so that a single partition keeps row 1):
-- writers notify when the relay of any partition is idle and waiting. The trigger already asks
-- whether any row is listening.
ALTER TABLE relay_state DROP CONSTRAINT relay_state_id_check;
ALTER TABLE relay_state ADD CONSTRAINT relay_state_id_positive CHECK (id >= 1);
