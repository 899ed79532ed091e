//! Positions in the write-ahead log, for reading from a streaming replica what the primary committed.
//!
//! A position (an LSN) is a byte offset into the WAL; Postgres shows it as `16/B374D848` and these
//! functions return it as that offset, a plain number, so the service layer can compare and store it
//! in an atomic. The statements are tiny and run on whichever server `db` names.

use sqlx::PgExecutor;

/// How far the primary's WAL has been written. Taken after a commit has returned, it is at or past the
/// end of that commit's record, because a commit returns only once its WAL is flushed
/// (`synchronous_commit`, on for the api's sessions).
///
/// The write position rather than the insert position: a replay position always ends where a record
/// ends, and so does the write position, while the insert position may sit past a page header that
/// no replay position ever equals (an idle replica would never seem to catch up with it).
#[tracing::instrument(name = "Read the primary's WAL position", skip(db))]
pub async fn written(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    let lsn: i64 = sqlx::query_scalar("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")
        .fetch_one(db)
        .await?;
    Ok(lsn.unsigned_abs())
}

/// How far a hot standby has replayed the primary's WAL: every transaction that committed at or
/// before it is visible to the standby's next snapshot. A server that is not in recovery (the primary
/// itself, named as its own replica) answers with its write position.
#[tracing::instrument(name = "Read the replica's replay position", skip(db))]
pub async fn replayed(db: impl PgExecutor<'_>) -> sqlx::Result<u64> {
    // COALESCE evaluates its second argument only when the first is NULL, i.e. not in recovery, where
    // `pg_current_wal_lsn()` is allowed.
    let lsn: i64 = sqlx::query_scalar(
        "SELECT (COALESCE(pg_last_wal_replay_lsn(), pg_current_wal_lsn()) - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(db)
    .await?;
    Ok(lsn.unsigned_abs())
}
