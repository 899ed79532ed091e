-- API processes cache live sessions in memory so that authenticating a request costs no query. These
-- triggers tell every process, through LISTEN/NOTIFY, the moment a cached answer goes stale: a session
-- revoked or deleted (also by a user's deletion, which cascades), or a user whose role changed. The
-- notification is sent when the transaction commits, never before. A process whose listening
-- connection drops clears its cache, since notifications sent meanwhile are lost.

CREATE FUNCTION notify_session_revoked() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('session_revoked', OLD.id::text);
        RETURN OLD;
    END IF;
    IF NEW.revoked_at IS NOT NULL AND OLD.revoked_at IS NULL THEN
        PERFORM pg_notify('session_revoked', NEW.id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER sessions_notify_revoked
    AFTER UPDATE OF revoked_at OR DELETE ON sessions
    FOR EACH ROW EXECUTE FUNCTION notify_session_revoked();

CREATE FUNCTION notify_user_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('user_changed', OLD.id::text);
        RETURN OLD;
    END IF;
    IF NEW.role IS DISTINCT FROM OLD.role THEN
        PERFORM pg_notify('user_changed', NEW.id::text);
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER users_notify_changed
    AFTER UPDATE OF role OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION notify_user_changed();
