//! Dead letters: the stream entries a consumer group gave up on, kept in Postgres so that losing Redis
//! loses none of them, listed and replayed by `bankctl dlq`.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::Timestamp;

/// A stream entry a consumer group gives up on.
#[derive(Debug, Clone)]
pub struct NewDeadLetter<'a> {
    pub event_id: Option<Uuid>,
    pub consumer_group: &'a str,
    pub stream: &'a str,
    pub stream_entry_id: &'a str,
    /// The entry's fields as read (a JSON object of strings).
    pub fields: &'a serde_json::Value,
    pub error: &'a str,
    pub attempts: i32,
    pub first_failed_at: Timestamp,
}

/// A recorded dead letter.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub event_id: Option<Uuid>,
    pub consumer_group: String,
    pub stream: String,
    pub stream_entry_id: String,
    pub fields: serde_json::Value,
    pub error: String,
    pub attempts: i32,
    pub first_failed_at: Timestamp,
    pub last_failed_at: Timestamp,
    pub replayed_at: Option<Timestamp>,
}

/// Records a dead letter. The same entry given up twice by the same group (a second worker that raced
/// on it, or a replay that failed again) is one row, with the later failure.
#[tracing::instrument(name = "Record a dead letter", skip_all, fields(group = letter.consumer_group, entry = letter.stream_entry_id))]
pub async fn record(db: impl PgExecutor<'_>, letter: &NewDeadLetter<'_>) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"
        INSERT INTO dead_letters AS d (event_id, consumer_group, stream, stream_entry_id, fields, error,
                                       attempts, first_failed_at, last_failed_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
        ON CONFLICT (consumer_group, stream, stream_entry_id) DO UPDATE
            SET error = EXCLUDED.error, attempts = GREATEST(d.attempts, EXCLUDED.attempts),
                last_failed_at = now(), replayed_at = NULL
        RETURNING id
        "#,
        letter.event_id,
        letter.consumer_group,
        letter.stream,
        letter.stream_entry_id,
        letter.fields,
        letter.error,
        letter.attempts,
        letter.first_failed_at,
    )
    .fetch_one(db)
    .await
}

/// The dead letters not yet replayed, oldest first.
#[tracing::instrument(name = "List dead letters", skip(db))]
pub async fn waiting(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<DeadLetter>> {
    sqlx::query_as!(
        DeadLetter,
        r#"
        SELECT id, event_id, consumer_group, stream, stream_entry_id, fields, error, attempts,
               first_failed_at, last_failed_at, replayed_at
        FROM dead_letters WHERE replayed_at IS NULL ORDER BY id
        "#
    )
    .fetch_all(db)
    .await
}

/// One dead letter by id.
#[tracing::instrument(name = "Get a dead letter", skip(db))]
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<DeadLetter>> {
    sqlx::query_as!(
        DeadLetter,
        r#"
        SELECT id, event_id, consumer_group, stream, stream_entry_id, fields, error, attempts,
               first_failed_at, last_failed_at, replayed_at
        FROM dead_letters WHERE id = $1
        "#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Marks a dead letter replayed (its entry is back on its stream); `false` if it was already.
#[tracing::instrument(name = "Mark a dead letter replayed", skip(db))]
pub async fn mark_replayed(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<bool> {
    let marked = sqlx::query!(
        "UPDATE dead_letters SET replayed_at = now() WHERE id = $1 AND replayed_at IS NULL",
        id
    )
    .execute(db)
    .await?;
    Ok(marked.rows_affected() == 1)
}
