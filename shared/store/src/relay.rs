//! What the outbox relay reads and writes.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// An outbox row waiting to be published.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    pub payload: String,
    pub traceparent: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A share of the outbox: the rows whose `partition_key` (a stable hash of the aggregate whose order
/// they keep) is `index` modulo `count`. One relay at a time leads each partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub index: u16,
    pub count: u16,
}

impl Partition {
    /// The whole outbox, as one partition.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };

    /// Every partition of `count`.
    pub fn all(count: u16) -> impl Iterator<Item = Partition> {
        (0..count.max(1)).map(move |index| Partition {
            index,
            count: count.max(1),
        })
    }
}

/// [`claim_in`] over the whole outbox.
pub async fn claim(tx: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<OutboxRow>> {
    claim_in(tx, Partition::WHOLE, limit).await
}

/// Claims up to `limit` unpublished rows of `partition` in commit-time order and marks them published, in one statement,
/// inside the caller's transaction: the caller publishes them and commits, or rolls back (they stay
/// unpublished) when publishing fails. Claiming by state rather than advancing past an id means a row
/// whose transaction commits late is still found on a later pass: nothing is skipped. `SKIP LOCKED`
/// leaves rows another claimer holds to it.
///
/// Locking and marking in one statement writes each row once; a `SELECT ... FOR UPDATE` followed by an
/// `UPDATE` wrote each row twice (the lock, then the new version) and cost one more round trip.
#[tracing::instrument(name = "Claim unpublished outbox rows", skip(tx))]
pub async fn claim_in(
    tx: &mut PgConnection,
    partition: Partition,
    limit: i64,
) -> sqlx::Result<Vec<OutboxRow>> {
    // One partition claims without the partition filter: the planner cannot estimate
    // `partition_key % $2 = $3`, and the plan it picks for it drained a single partition 7-11% slower
    // (docs/benchmarks.md).
    let mut rows = if partition.count <= 1 {
        sqlx::query_as!(
            OutboxRow,
            r#"
            WITH claimed AS (
                SELECT id FROM outbox
                WHERE published_at IS NULL
                ORDER BY created_at, id
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE outbox o SET published_at = now()
            FROM claimed c
            WHERE o.id = c.id
            RETURNING o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload::text AS "payload!",
                      o.traceparent, o.created_at
            "#,
            limit
        )
        .fetch_all(tx)
        .await?
    } else {
        sqlx::query_as!(
            OutboxRow,
            r#"
            WITH claimed AS (
                SELECT id FROM outbox
                WHERE published_at IS NULL AND partition_key % $2 = $3
                ORDER BY created_at, id
                LIMIT $1
                FOR UPDATE SKIP LOCKED
            )
            UPDATE outbox o SET published_at = now()
            FROM claimed c
            WHERE o.id = c.id
            RETURNING o.id, o.aggregate_type, o.aggregate_id, o.event_type, o.payload::text AS "payload!",
                      o.traceparent, o.created_at
            "#,
            limit,
            i32::from(partition.count),
            i32::from(partition.index)
        )
        .fetch_all(tx)
        .await?
    };
    // RETURNING keeps no order; publishing must follow commit-time order.
    rows.sort_by_key(|r| (r.created_at, r.id));
    Ok(rows)
}

/// Deletes published rows older than the retention window; returns how many.
#[tracing::instrument(name = "Delete retained outbox rows", skip(db))]
pub async fn delete_published_before(
    db: impl PgExecutor<'_>,
    before: DateTime<Utc>,
) -> sqlx::Result<u64> {
    sqlx::query!(
        r#"
        DELETE FROM outbox WHERE id IN (
            SELECT id FROM outbox WHERE published_at < $1 ORDER BY published_at LIMIT 10000
        )
        "#,
        before
    )
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}

/// Makes retained rows created since `since` unpublished again, so the relay publishes them again (to
/// repair a Redis that lost its data). Returns how many.
#[tracing::instrument(name = "Mark outbox rows for republishing", skip(db))]
pub async fn republish_since(db: impl PgExecutor<'_>, since: DateTime<Utc>) -> sqlx::Result<u64> {
    sqlx::query!(
        "UPDATE outbox SET published_at = NULL WHERE created_at >= $1 AND published_at IS NOT NULL",
        since
    )
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}

/// Tells writers whether the relay is idle and waiting for a NOTIFY (`true`) or busy polling (`false`).
pub async fn set_listening(db: impl PgExecutor<'_>, listening: bool) -> sqlx::Result<()> {
    set_listening_in(db, Partition::WHOLE, listening).await
}

/// Tells writers whether the relay of `partition` is idle and waiting for a NOTIFY (`true`) or busy
/// polling (`false`); writers notify while any partition's relay waits.
#[tracing::instrument(name = "Set the relay's listening state", skip(db))]
pub async fn set_listening_in(
    db: impl PgExecutor<'_>,
    partition: Partition,
    listening: bool,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        INSERT INTO relay_state (id, listening) VALUES ($1, $2)
        ON CONFLICT (id) DO UPDATE SET listening = EXCLUDED.listening
        WHERE relay_state.listening IS DISTINCT FROM EXCLUDED.listening
        "#,
        i32::from(partition.index) + 1,
        listening
    )
    .execute(db)
    .await
    .map(|_| ())
}
