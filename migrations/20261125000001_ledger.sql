-- StreamBank schema, part 1: people, money, and the events that describe both.
--
-- The database enforces the ledger's invariants itself (CHECK, UNIQUE, FOREIGN KEY), so that no code path,
-- present or future, can write a negative balance, a non-positive transfer or a self-transfer.
-- Constraint names are part of the code's contract: the store maps violations to typed errors by name.

CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username            text        NOT NULL,
    email               text        NOT NULL,
    full_name           text        NOT NULL,
    password_hash       text        NOT NULL,
    role                text        NOT NULL DEFAULT 'customer',
    email_verified_at   timestamptz,
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_username_key UNIQUE (username),
    CONSTRAINT users_role_check CHECK (role IN ('customer', 'banker')),
    CONSTRAINT users_username_format CHECK (username ~ '^[a-z0-9_]{3,32}$'),
    CONSTRAINT users_email_length CHECK (length(email) BETWEEN 3 AND 254)
);
-- Case-insensitive uniqueness: "Ann@Example.com" and "ann@example.com" are one mailbox.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

CREATE TABLE accounts (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id   bigint      NOT NULL REFERENCES users (id),
    currency   text        NOT NULL,
    balance    bigint      NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_balance_nonnegative CHECK (balance >= 0),
    CONSTRAINT accounts_currency_check CHECK (currency IN ('USD', 'EUR', 'CAD')),
    -- Also the index for "accounts of an owner" (owner_id is its leading column).
    CONSTRAINT accounts_owner_currency_key UNIQUE (owner_id, currency)
);

CREATE TABLE transfers (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    from_account_id bigint      NOT NULL REFERENCES accounts (id),
    to_account_id   bigint      NOT NULL REFERENCES accounts (id),
    amount          bigint      NOT NULL,
    currency        text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transfers_amount_positive CHECK (amount > 0),
    CONSTRAINT transfers_distinct_accounts CHECK (from_account_id <> to_account_id)
);
-- History of an account, newest first, paged by id: one index per side of the transfer.
CREATE INDEX transfers_from_account_idx ON transfers (from_account_id, id);
CREATE INDEX transfers_to_account_idx ON transfers (to_account_id, id);

-- One row per movement of one account. A transfer writes two (minus on the source, plus on the
-- destination); a deposit writes one. The balance of an account always equals the sum of its entries.
CREATE TABLE entries (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id   bigint      NOT NULL REFERENCES accounts (id),
    amount       bigint      NOT NULL,
    transfer_id  bigint      REFERENCES transfers (id),
    deposited_by bigint      REFERENCES users (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT entries_amount_nonzero CHECK (amount <> 0),
    CONSTRAINT entries_one_source CHECK ((transfer_id IS NULL) <> (deposited_by IS NULL)),
    CONSTRAINT entries_deposit_positive CHECK (deposited_by IS NULL OR amount > 0)
);
CREATE INDEX entries_account_idx ON entries (account_id, id DESC);
CREATE INDEX entries_transfer_idx ON entries (transfer_id) WHERE transfer_id IS NOT NULL;
CREATE INDEX entries_deposited_by_idx ON entries (deposited_by) WHERE deposited_by IS NOT NULL;

-- A login. Access tokens name their session (`sid`), so revoking the row stops every token of it at once.
-- Only a hash of the current refresh token is kept; `refresh_generation` counts rotations, and a
-- rotated-out refresh token presented again revokes the session (reuse detection).
CREATE TABLE sessions (
    id                 uuid PRIMARY KEY,
    user_id            bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash bytea       NOT NULL,
    refresh_generation integer     NOT NULL DEFAULT 0,
    user_agent         text,
    client_ip          inet,
    created_at         timestamptz NOT NULL DEFAULT now(),
    rotated_at         timestamptz,
    expires_at         timestamptz NOT NULL,
    revoked_at         timestamptz,
    revoked_reason     text
);
CREATE INDEX sessions_user_idx ON sessions (user_id);

-- An email verification. Only the hash of the secret is stored; `event_id` (the `user.registered` event
-- that caused it) is unique, so a redelivered event cannot create a second verification.
CREATE TABLE verify_emails (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email       text        NOT NULL,
    secret_hash bytea       NOT NULL,
    event_id    uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    CONSTRAINT verify_emails_event_key UNIQUE (event_id)
);
CREATE INDEX verify_emails_user_idx ON verify_emails (user_id);

-- Idempotency-Key records for POST /v1/transfers, scoped per user. `status` is NULL while the first
-- request is still running (a duplicate then gets 409); afterwards the stored response is replayed.
CREATE TABLE idempotency_keys (
    user_id             bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key                 text        NOT NULL,
    request_fingerprint bytea       NOT NULL,
    response_status     smallint,
    response_body       jsonb,
    created_at          timestamptz NOT NULL DEFAULT now(),
    completed_at        timestamptz,
    PRIMARY KEY (user_id, key),
    CONSTRAINT idempotency_keys_key_length CHECK (length(key) BETWEEN 1 AND 255)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- The transactional outbox: written in the same transaction as the business rows it describes, published
-- to Redis Streams by streambank-relay, kept for a retention window after publication.
CREATE TABLE outbox (
    id             uuid PRIMARY KEY,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    payload        jsonb       NOT NULL,
    traceparent    text,
    created_at     timestamptz NOT NULL DEFAULT now(),
    published_at   timestamptz
);
CREATE INDEX outbox_unpublished_idx ON outbox (created_at, id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX outbox_aggregate_idx ON outbox (aggregate_type, aggregate_id);

-- Consumers record each event they have applied, in the same transaction as the effect.
CREATE TABLE processed_events (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

CREATE TABLE notifications (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    event_id   uuid        NOT NULL,
    kind       text        NOT NULL,
    body       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_user_event_key UNIQUE (user_id, event_id)
);
CREATE INDEX notifications_user_idx ON notifications (user_id, id DESC);
