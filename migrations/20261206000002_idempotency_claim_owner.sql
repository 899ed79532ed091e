-- Who holds an idempotency key's claim: a token drawn per request. A request whose database connection
-- died does not know whether its claim (or its transfer) committed; with the token it can claim its own
-- key again, or find the transfer it committed, instead of being told its own key is "in progress".
ALTER TABLE idempotency_keys ADD COLUMN claimed_by uuid;
