//! What event consumers record so that each effect happens once: processed events, notifications,
//! and email deliveries.

use sqlx::PgExecutor;
use uuid::Uuid;

/// Whether `consumer` has already applied the event.
#[tracing::instrument(name = "Check whether an event was processed", skip(db))]
pub async fn is_processed(
    db: impl PgExecutor<'_>,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM processed_events WHERE consumer = $1 AND event_id = $2) AS "exists!""#,
        consumer,
        event_id
    )
    .fetch_one(db)
    .await
}

/// Records that `consumer` applied the event; run it in the transaction of the effect, if it has one.
/// `false` when it was already recorded (a concurrent redelivery won), in which case the caller rolls
/// back.
#[tracing::instrument(name = "Record a processed event", skip(db))]
pub async fn record_processed(
    db: impl PgExecutor<'_>,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer,
        event_id
    )
    .execute(db)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// The notification rows of several events, column by column (one element per row).
#[derive(Debug, Default, Clone)]
pub struct NotificationRows {
    pub user_ids: Vec<i64>,
    pub event_ids: Vec<Uuid>,
    pub kinds: Vec<String>,
    pub bodies: Vec<String>,
}

impl NotificationRows {
    pub fn push(&mut self, user_id: i64, event_id: Uuid, kind: &str, body: &str) {
        self.user_ids.push(user_id);
        self.event_ids.push(event_id);
        self.kinds.push(kind.to_owned());
        self.bodies.push(body.to_owned());
    }
}

/// What [`write_notifications`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotificationsWritten {
    /// Events recorded as processed by this call (the others had been already).
    pub events: i64,
    /// Notification rows inserted.
    pub rows: i64,
}

/// Records `events` as processed by `consumer` and inserts the notification rows of those that were not
/// processed before, in one statement, so atomically: an event gets all its rows and its record, or
/// neither, exactly once, however often it is delivered and by however many workers at once (a
/// concurrent insert of the same record waits for the other and then skips). Rows for users deleted in
/// the meantime are left out. Rows get their ids in the order given.
#[tracing::instrument(name = "Write notifications", skip_all, fields(events = events.len(), rows = rows.user_ids.len()))]
pub async fn write_notifications(
    db: impl PgExecutor<'_>,
    consumer: &str,
    events: &[Uuid],
    rows: &NotificationRows,
) -> sqlx::Result<NotificationsWritten> {
    sqlx::query_as!(
        NotificationsWritten,
        r#"
        WITH fresh AS (
            INSERT INTO processed_events (consumer, event_id)
            SELECT $1, e FROM unnest($2::uuid[]) AS e
            ON CONFLICT DO NOTHING
            RETURNING event_id
        ), written AS (
            INSERT INTO notifications (user_id, event_id, kind, body)
            SELECT n.user_id, n.event_id, n.kind, n.body
            FROM unnest($3::bigint[], $4::uuid[], $5::text[], $6::text[]) WITH ORDINALITY
                AS n (user_id, event_id, kind, body, position)
            JOIN fresh USING (event_id)
            JOIN users u ON u.id = n.user_id
            ORDER BY n.position
            ON CONFLICT (user_id, event_id) DO NOTHING
            RETURNING 1
        )
        SELECT (SELECT count(*) FROM fresh) AS "events!", (SELECT count(*) FROM written) AS "rows!"
        "#,
        consumer,
        events,
        &rows.user_ids,
        &rows.event_ids,
        &rows.kinds,
        &rows.bodies,
    )
    .fetch_one(db)
    .await
}

/// What [`claim_delivery`] found for an (event, recipient) email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryClaim {
    /// The delivery is ours until the lease ends: send, then [`mark_sent`] (or [`release_delivery`]).
    /// `attempt` counts the claims of this delivery, 1 for the first.
    Claimed { attempt: i32 },
    /// The SMTP server already accepted this email: nothing to do.
    Sent,
    /// Another worker holds a fresh claim (it is sending now, or died less than a lease ago).
    HeldBy { claimer: String },
}

/// Claims the email for (event, recipient) for `claimer` for `lease_secs`, in one statement: a new
/// delivery, or one whose claim has expired (its claimer died or hung), or one this claimer already
/// holds. A delivery that was sent, or that another claimer holds with a fresh lease, is not claimed, so
/// no two workers ever talk to SMTP about the same email at once.
#[tracing::instrument(name = "Claim an email delivery", skip(db))]
pub async fn claim_delivery(
    db: impl PgExecutor<'_> + Copy,
    event_id: Uuid,
    recipient: &str,
    kind: &str,
    claimer: &str,
    lease_secs: f64,
) -> sqlx::Result<DeliveryClaim> {
    let claimed = sqlx::query_scalar!(
        r#"
        INSERT INTO email_deliveries AS d (event_id, recipient, kind, state, claimed_by, lease_until)
        VALUES ($1, $2, $3, 'sending', $4, now() + make_interval(secs => $5))
        ON CONFLICT (event_id, recipient) DO UPDATE
            SET claimed_by = EXCLUDED.claimed_by,
                lease_until = EXCLUDED.lease_until,
                attempts = d.attempts + 1
            WHERE d.state = 'sending'
              AND (d.lease_until < now() OR d.claimed_by = EXCLUDED.claimed_by)
        RETURNING attempts
        "#,
        event_id,
        recipient,
        kind,
        claimer,
        lease_secs
    )
    .fetch_optional(db)
    .await?;
    if let Some(attempt) = claimed {
        return Ok(DeliveryClaim::Claimed { attempt });
    }
    // A separate statement: it sees the row that made the INSERT conflict, even one committed while
    // the INSERT waited for it.
    let row = sqlx::query!(
        r#"SELECT state, claimed_by FROM email_deliveries WHERE event_id = $1 AND recipient = $2"#,
        event_id,
        recipient
    )
    .fetch_optional(db)
    .await?;
    Ok(match row {
        Some(row) if row.state == "sent" => DeliveryClaim::Sent,
        Some(row) => DeliveryClaim::HeldBy {
            claimer: row.claimed_by.unwrap_or_default(),
        },
        // Released between the two statements: someone else will claim it, or we do on the retry.
        None => DeliveryClaim::HeldBy {
            claimer: String::new(),
        },
    })
}

/// Marks a claimed delivery sent (the SMTP server accepted it). `false` when `claimer` no longer held
/// the claim: its lease expired and another worker took the delivery over, which may send it again
/// (the one window `docs/events.md` describes).
#[tracing::instrument(name = "Mark an email sent", skip(db))]
pub async fn mark_sent(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    recipient: &str,
    claimer: &str,
) -> sqlx::Result<bool> {
    let marked = sqlx::query!(
        r#"
        UPDATE email_deliveries
        SET state = 'sent', sent_at = now(), lease_until = NULL
        WHERE event_id = $1 AND recipient = $2 AND state = 'sending' AND claimed_by = $3
        "#,
        event_id,
        recipient,
        claimer
    )
    .execute(db)
    .await?;
    Ok(marked.rows_affected() == 1)
}

/// Gives up a claim whose email was not sent (the SMTP exchange failed), so the delivery can be claimed
/// again at once, by this worker's retry or another's.
#[tracing::instrument(name = "Release an email delivery", skip(db))]
pub async fn release_delivery(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    recipient: &str,
    claimer: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        DELETE FROM email_deliveries
        WHERE event_id = $1 AND recipient = $2 AND state = 'sending' AND claimed_by = $3
        "#,
        event_id,
        recipient,
        claimer
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Where to write to a user.
#[derive(Debug, Clone)]
pub struct Contact {
    pub user_id: i64,
    pub email: String,
    pub full_name: String,
    pub verified: bool,
}

#[tracing::instrument(name = "Look up a user's contact", skip(db))]
pub async fn contact(db: impl PgExecutor<'_>, user_id: i64) -> sqlx::Result<Option<Contact>> {
    sqlx::query_as!(
        Contact,
        r#"SELECT id AS user_id, email, full_name, email_verified_at IS NOT NULL AS "verified!" FROM users WHERE id = $1"#,
        user_id
    )
    .fetch_optional(db)
    .await
}
