-- partition_key was a stored generated column, and PostgreSQL computes those again on every UPDATE: the
-- relay's claim, which marks rows published, re-hashed each row and drained 11% slower
-- (docs/benchmarks.md). It becomes a plain column, set once, at insert, by a row trigger; the hash is
-- the one the generated column used, so existing rows keep their keys.
ALTER TABLE outbox ALTER COLUMN partition_key DROP EXPRESSION;

CREATE FUNCTION outbox_partition_key() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.partition_key := (hashtextextended(
        CASE WHEN NEW.aggregate_type = 'transfer' AND NEW.payload ? 'from_account_id'
             THEN 'account:' || (NEW.payload ->> 'from_account_id')
             ELSE NEW.aggregate_type || ':' || NEW.aggregate_id
        END, 0) & 2147483647)::integer;
    RETURN NEW;
END
$$;

CREATE TRIGGER outbox_partition_key
    BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_partition_key();
