//! Idempotency keys (IETF httpapi Idempotency-Key draft, with Stripe's semantics), scoped per user.

use sqlx::PgExecutor;

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The key is ours now: run the request and [`complete`] it in the same transaction as its effect.
    Started,
    /// The key exists; `status` is `None` while its first request is still running.
    Existing {
        fingerprint: Vec<u8>,
        status: Option<i16>,
        body: Option<serde_json::Value>,
    },
}

/// Claims `key` for a request with `fingerprint` inside the caller's transaction, or reports the
/// existing record. Run it first in the transaction that makes the request's effect and stores its
/// answer ([`complete`]): the claim then lives exactly as long as that transaction. A concurrent request
/// with the same key waits at this statement until the first commits (and then finds its answer) or rolls
/// back (and then claims the key itself); a request whose process or connection dies rolls back and
/// leaves nothing behind. A claim committed without an answer (by versions before this one) is taken over
/// once older than `abandon_after_secs`.
#[tracing::instrument(name = "Claim an idempotency key", skip(conn, fingerprint))]
pub async fn claim(
    conn: &mut sqlx::PgConnection,
    user_id: i64,
    key: &str,
    fingerprint: &[u8],
    abandon_after_secs: f64,
) -> sqlx::Result<Claim> {
    let started = sqlx::query_scalar!(
        r#"
        INSERT INTO idempotency_keys AS k (user_id, key, request_fingerprint)
        VALUES ($1, $2, $3)
        ON CONFLICT (user_id, key) DO UPDATE
            SET request_fingerprint = EXCLUDED.request_fingerprint, created_at = now()
            WHERE k.response_status IS NULL
              AND k.created_at < now() - make_interval(secs => $4)
        RETURNING true AS "started!"
        "#,
        user_id,
        key,
        fingerprint,
        abandon_after_secs
    )
    .fetch_optional(&mut *conn)
    .await?;
    if started.is_some() {
        return Ok(Claim::Started);
    }
    // A separate statement: it sees the row that made the INSERT conflict, even if that row was
    // committed while the INSERT waited for it.
    let row = sqlx::query!(
        r#"
        SELECT request_fingerprint, response_status, response_body
        FROM idempotency_keys WHERE user_id = $1 AND key = $2
        "#,
        user_id,
        key
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(Claim::Existing {
        fingerprint: row.request_fingerprint,
        status: row.response_status,
        body: row.response_body,
    })
}

/// Stores the response of a claimed key; run it in the transaction of the request's effect.
#[tracing::instrument(name = "Complete an idempotency key", skip(db, body))]
pub async fn complete(
    db: impl PgExecutor<'_>,
    user_id: i64,
    key: &str,
    status: i16,
    body: &serde_json::Value,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        UPDATE idempotency_keys SET response_status = $3, response_body = $4, completed_at = now()
        WHERE user_id = $1 AND key = $2
        "#,
        user_id,
        key,
        status,
        body
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// Deletes completed keys older than `keep_secs` (at least 24 hours by contract).
#[tracing::instrument(name = "Expire idempotency keys", skip(db))]
pub async fn expire(db: impl PgExecutor<'_>, keep_secs: f64) -> sqlx::Result<u64> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
        keep_secs
    )
    .execute(db)
    .await
    .map(|r| r.rows_affected())
}
