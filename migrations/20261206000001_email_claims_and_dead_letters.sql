-- Emails exactly once between workers: a worker claims the (event, recipient) delivery here before it
-- talks to SMTP, and marks it sent once the server accepted the message. A claim carries its claimer and
-- a lease; another worker may take the delivery over only once the lease has expired (its claimer died
-- or hung), never while it is fresh. Rows recorded before this migration were sent.
ALTER TABLE email_deliveries
    ADD COLUMN state       text        NOT NULL DEFAULT 'sent'
        CONSTRAINT email_deliveries_state CHECK (state IN ('sending', 'sent')),
    ADD COLUMN claimed_by  text,
    ADD COLUMN lease_until timestamptz,
    ADD COLUMN attempts    integer     NOT NULL DEFAULT 1,
    ALTER COLUMN sent_at DROP NOT NULL,
    ALTER COLUMN sent_at DROP DEFAULT;

ALTER TABLE email_deliveries
    ADD CONSTRAINT email_deliveries_sent_has_time CHECK (state <> 'sent' OR sent_at IS NOT NULL),
    ADD CONSTRAINT email_deliveries_sending_has_lease
        CHECK (state <> 'sending' OR (claimed_by IS NOT NULL AND lease_until IS NOT NULL));

-- Dead letters, durably: the stream entry a consumer group gave up on, with why and when. Postgres is the
-- record (emptying Redis loses none); the `{prefix}:dlq` stream is kept for inspection only.
CREATE TABLE dead_letters (
    id               bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         uuid,                 -- NULL when the entry was not an event at all
    consumer_group   text        NOT NULL,
    stream           text        NOT NULL, -- the stream key it was read from
    stream_entry_id  text        NOT NULL,
    fields           jsonb       NOT NULL, -- the entry's fields as read, to replay it
    error            text        NOT NULL,
    attempts         integer     NOT NULL,
    first_failed_at  timestamptz NOT NULL,
    last_failed_at   timestamptz NOT NULL,
    replayed_at      timestamptz,
    CONSTRAINT dead_letters_entry_once UNIQUE (consumer_group, stream, stream_entry_id)
);

CREATE INDEX dead_letters_waiting ON dead_letters (id) WHERE replayed_at IS NULL;
