//! Notifications shown to users (written by the notifications worker).

use sqlx::PgExecutor;
use streambank_domain::Notification;

/// A user's notifications, newest first, before the keyset cursor `before`.
#[tracing::instrument(name = "List a user's notifications", skip(db))]
pub async fn list(
    db: impl PgExecutor<'_>,
    user_id: i64,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Notification>> {
    sqlx::query_as!(
        Notification,
        r#"
        SELECT id, user_id, event_id, kind, body, created_at FROM notifications
        WHERE user_id = $1 AND id < COALESCE($2, 9223372036854775807)
        ORDER BY id DESC
        LIMIT $3
        "#,
        user_id,
        before,
        limit
    )
    .fetch_all(db)
    .await
}
