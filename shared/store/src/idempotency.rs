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

/// Claims `key` for a request with `fingerprint` on behalf of `claimer` (a token the request drew), or
/// reports the existing record. A claim whose request never completed is taken over after
/// `abandon_after_secs` (its process died), or at once by the same claimer (its connection died, and it
/// cannot know whether its first claim committed).
#[tracing::instrument(name = "Claim an idempotency key", skip(db, fingerprint))]
pub async fn claim(
    db: impl PgExecutor<'_> + Copy,
    user_id: i64,
    key: &str,
    fingerprint: &[u8],
    abandon_after_secs: f64,
    claimer: uuid::Uuid,
) -> sqlx::Result<Claim> {
    let started = sqlx::query_scalar!(
        r#"
        INSERT INTO idempotency_keys AS k (user_id, key, request_fingerprint, claimed_by)
        VALUES ($1, $2, $3, $5)
        ON CONFLICT (user_id, key) DO UPDATE
            SET request_fingerprint = EXCLUDED.request_fingerprint, created_at = now(),
                claimed_by = EXCLUDED.claimed_by
            WHERE k.response_status IS NULL
              AND (k.created_at < now() - make_interval(secs => $4)
                   OR (k.claimed_by = EXCLUDED.claimed_by
                       AND k.request_fingerprint = EXCLUDED.request_fingerprint))
        RETURNING true AS "started!"
        "#,
        user_id,
        key,
        fingerprint,
        abandon_after_secs,
        claimer
    )
    .fetch_optional(db)
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
    .fetch_one(db)
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

/// Gives up a claim whose request failed without an effect, so the client may retry with the same key.
#[tracing::instrument(name = "Release an idempotency key", skip(db))]
pub async fn release(db: impl PgExecutor<'_>, user_id: i64, key: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM idempotency_keys WHERE user_id = $1 AND key = $2 AND response_status IS NULL",
        user_id,
        key
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
