//! Notifications shown to users (written by the notifications worker).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRow {
    pub id: i64,
    pub user_id: i64,
    pub event_id: Uuid,
    pub kind: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// A user's notifications, newest first, before the keyset cursor `before`.
#[tracing::instrument(name = "List a user's notifications", skip(db))]
pub async fn list(
    db: impl PgExecutor<'_>,
    user_id: i64,
    before: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as!(
        NotificationRow,
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
