-- The relay wakes on NOTIFY 'outbox' when a transaction that wrote outbox rows commits (one notification
-- per statement, with no payload: it is a hint to look, and the relay's fallback poll covers anything
-- missed while it was disconnected).
CREATE FUNCTION notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_notify
    AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION notify_outbox();

-- Each email is recorded per (event, recipient) once the SMTP server has accepted it, so a redelivered
-- event does not send it again.
CREATE TABLE email_deliveries (
    event_id  uuid        NOT NULL,
    recipient text        NOT NULL,
    kind      text        NOT NULL,
    sent_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event_id, recipient)
);
