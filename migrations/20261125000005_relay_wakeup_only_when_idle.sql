-- NOTIFY makes every committing transaction take one global lock (the notification queue's), which
-- halved transfer throughput when each transfer notified. The relay only needs a wake-up when it is
-- idle and waiting; while it is busy it polls every few milliseconds anyway. So the relay records
-- whether it is waiting, and the outbox trigger notifies only then.
--
-- It starts false: with no relay running nobody listens. A relay sets it when it goes idle; if a relay
-- dies while busy (false), its successor's fallback poll still finds every row, and the successor sets
-- the state itself. A commit that read `listening = false` just before the relay went idle is found by
-- the relay's final look before waiting or, at worst, by its fallback poll.
CREATE TABLE relay_state (
    id        integer PRIMARY KEY CHECK (id = 1),
    listening boolean NOT NULL
);
INSERT INTO relay_state (id, listening) VALUES (1, false);

CREATE OR REPLACE FUNCTION notify_outbox() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM relay_state WHERE listening) THEN
        PERFORM pg_notify('outbox', '');
    END IF;
    RETURN NULL;
END
$$;
