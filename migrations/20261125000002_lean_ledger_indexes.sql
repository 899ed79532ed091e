-- Every index is written by every insert, and a transfer inserts five rows. These two served no query:
-- entries are read by account (entries_account_idx), never by transfer, and outbox rows are read by the
-- relay in commit order (outbox_unpublished_idx), never by aggregate. Transfers and users are never
-- deleted, so the foreign keys that point at them need no index on the referencing side.
DROP INDEX entries_transfer_idx;
DROP INDEX outbox_aggregate_idx;
