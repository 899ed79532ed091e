//! Email verifications: created by the email-verification worker, used by the link in the email.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use streambank_events::EventType;
use uuid::Uuid;

use crate::EventMeta;

/// Records the verification for the `user.registered` event `event_id`, or gives an unused one a new
/// secret (a redelivery after a crash before its email was recorded: nobody holds the old link).
/// `None` when the event's verification was already used.
#[tracing::instrument(name = "Insert an email verification", skip(db, secret_hash))]
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: i64,
    email: &str,
    secret_hash: &[u8],
    event_id: Uuid,
    expires_at: DateTime<Utc>,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"
        INSERT INTO verify_emails (user_id, email, secret_hash, event_id, expires_at)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (event_id) DO UPDATE
            SET secret_hash = EXCLUDED.secret_hash, expires_at = EXCLUDED.expires_at
            WHERE verify_emails.used_at IS NULL
        RETURNING id
        "#,
        user_id,
        email,
        secret_hash,
        event_id,
        expires_at
    )
    .fetch_optional(db)
    .await
}

/// Uses a verification, in one statement: the verification is marked used, the user verified, and a
/// `user.email_verified` event written, or nothing happens (wrong code, already used, expired, or an
/// address that is no longer the user's). Returns the user id when it worked.
#[tracing::instrument(name = "Use an email verification", skip(db, secret_hash, event), fields(event_id = %event.id))]
pub async fn use_verification(
    db: impl PgExecutor<'_>,
    id: i64,
    secret_hash: &[u8],
    event: &EventMeta,
) -> sqlx::Result<Option<i64>> {
    let event_type = EventType::UserEmailVerified;
    sqlx::query_scalar!(
        r#"
        WITH used AS (
            UPDATE verify_emails v SET used_at = now()
            FROM users u
            WHERE v.id = $1 AND v.secret_hash = $2 AND v.used_at IS NULL AND v.expires_at > now()
              AND u.id = v.user_id AND lower(u.email) = lower(v.email)
            RETURNING v.user_id
        ), verified AS (
            UPDATE users SET email_verified_at = COALESCE(email_verified_at, now())
            FROM used WHERE users.id = used.user_id
            RETURNING users.id
        ), event AS (
            INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
            SELECT $3, $4, id::text, $5, jsonb_build_object('user_id', id), $6 FROM verified
        )
        SELECT id AS "user_id!" FROM verified
        "#,
        id,
        secret_hash,
        event.id,
        event_type.aggregate().as_str(),
        event_type.as_str(),
        event.traceparent,
    )
    .fetch_optional(db)
    .await
}

/// The user of a verification that was already used with this secret and whose address is verified:
/// the link opened a second time. `None` for a wrong secret or a link that never worked.
#[tracing::instrument(name = "Find a used email verification", skip(db, secret_hash))]
pub async fn used_by(
    db: impl PgExecutor<'_>,
    id: i64,
    secret_hash: &[u8],
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar!(
        r#"
        SELECT u.id
        FROM verify_emails v JOIN users u ON u.id = v.user_id
        WHERE v.id = $1 AND v.secret_hash = $2 AND v.used_at IS NOT NULL
          AND u.email_verified_at IS NOT NULL AND lower(u.email) = lower(v.email)
        "#,
        id,
        secret_hash,
    )
    .fetch_optional(db)
    .await
}
