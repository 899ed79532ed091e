-- One call of transfer_batch with 8 transfers that share no account (one wave), for measuring what a
-- batch costs Postgres without the service layer in front (docs/benchmarks.md, "Ledger"). Run it against
-- the database bench/run-ledger.sh leaves behind (1,000 accounts, account i owned by user i):
--   pgbench -n -M prepared -c 1 -T 10 -f bench/sql/transfer-batch-8.sql \
--     postgres://postgres@127.0.0.1:5432/streambank_bench
-- Sources are :b + 62k (k = 0..7, all within 1..496), destinations 500 higher, so no account appears
-- twice; each source's owner is the caller. Hand-written (not generated): the function's arguments are
-- its signature in migrations/20261202000002_transfer_batch_set_based.sql.
\set b random(1, 62)
SELECT count(*) FROM transfer_batch(
  ARRAY[:b, :b+62, :b+124, :b+186, :b+248, :b+310, :b+372, :b+434]::bigint[],
  ARRAY[:b+500, :b+562, :b+624, :b+686, :b+748, :b+810, :b+872, :b+934]::bigint[],
  ARRAY[1,2,3,4,5,6,7,8]::bigint[],
  ARRAY[:b, :b+62, :b+124, :b+186, :b+248, :b+310, :b+372, :b+434]::bigint[],
  ARRAY['USD','USD','USD','USD','USD','USD','USD','USD'],
  ARRAY[gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid(),gen_random_uuid()],
  ARRAY['','','','','','','',''], ARRAY[1,1,1,1,1,1,1,1], 'transfer', 'transfer.completed');
