//! What event consumers record so that each effect happens once: processed events, notifications,
//! and email deliveries.

use sqlx::{PgConnection, PgExecutor};
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

/// Records that `consumer` applied the event; run it in the transaction of the effect. `false` when it
/// was already recorded (a concurrent redelivery won), in which case the caller rolls back.
#[tracing::instrument(name = "Record a processed event", skip(tx))]
pub async fn record_processed(
    tx: &mut PgConnection,
    consumer: &str,
    event_id: Uuid,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query!(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        consumer,
        event_id
    )
    .execute(tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

#[tracing::instrument(name = "Insert a notification", skip(tx, body))]
pub async fn insert_notification(
    tx: &mut PgConnection,
    user_id: i64,
    event_id: Uuid,
    kind: &str,
    body: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        INSERT INTO notifications (user_id, event_id, kind, body) VALUES ($1, $2, $3, $4)
        ON CONFLICT (user_id, event_id) DO NOTHING
        "#,
        user_id,
        event_id,
        kind,
        body
    )
    .execute(tx)
    .await
    .map(|_| ())
}

/// Whether the email for (event, recipient) was already accepted by the SMTP server.
#[tracing::instrument(name = "Check whether an email was sent", skip(db))]
pub async fn is_delivered(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    recipient: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM email_deliveries WHERE event_id = $1 AND recipient = $2) AS "exists!""#,
        event_id,
        recipient
    )
    .fetch_one(db)
    .await
}

#[tracing::instrument(name = "Record an email delivery", skip(db))]
pub async fn record_delivery(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    recipient: &str,
    kind: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO email_deliveries (event_id, recipient, kind) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        event_id,
        recipient,
        kind
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
