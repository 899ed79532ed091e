//! Sessions (logins) and the credentials a login checks.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// What a login needs to know about a user, looked up by username or (case-insensitively) email.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user_id: i64,
    pub password_hash: String,
    pub role: String,
    pub email_verified: bool,
}

#[tracing::instrument(name = "Look up login credentials", skip_all)]
pub async fn credentials(
    db: impl PgExecutor<'_>,
    login: &str,
) -> sqlx::Result<Option<Credentials>> {
    sqlx::query_as!(
        Credentials,
        r#"
        SELECT id AS user_id, password_hash, role, email_verified_at IS NOT NULL AS "email_verified!"
        FROM users
        WHERE username = $1 OR lower(email) = lower($1)
        LIMIT 1
        "#,
        login
    )
    .fetch_optional(db)
    .await
}

#[derive(Debug, Clone, Copy)]
pub struct NewSession<'a> {
    pub id: Uuid,
    pub user_id: i64,
    pub refresh_token_hash: &'a [u8],
    pub user_agent: Option<&'a str>,
    pub client_ip: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

#[tracing::instrument(name = "Insert a session", skip_all, fields(session_id = %session.id))]
pub async fn insert(db: impl PgExecutor<'_>, session: NewSession<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        r#"
        INSERT INTO sessions (id, user_id, refresh_token_hash, user_agent, client_ip, expires_at)
        VALUES ($1, $2, $3, $4, $5::text::inet, $6)
        "#,
        session.id,
        session.user_id,
        session.refresh_token_hash,
        session.user_agent,
        session.client_ip,
        session.expires_at,
    )
    .execute(db)
    .await
    .map(|_| ())
}

/// The state of a session as authentication needs it, with its user's current role.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub user_id: i64,
    pub role: String,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub refresh_token_hash: Vec<u8>,
}

/// One primary-key lookup: the per-request cost of making revocation immediate.
#[tracing::instrument(name = "Look up a session", skip(db))]
pub async fn state(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<Option<SessionState>> {
    sqlx::query_as!(
        SessionState,
        r#"
        SELECT s.user_id, u.role, s.expires_at, s.revoked_at, s.refresh_token_hash
        FROM sessions s JOIN users u ON u.id = s.user_id
        WHERE s.id = $1
        "#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Replaces the refresh token hash, but only if `current_hash` is still the session's current one and
/// the session is alive: two refreshes racing with the same token cannot both win. `false` when nothing
/// was rotated.
#[tracing::instrument(name = "Rotate a refresh token", skip_all, fields(session_id = %id))]
pub async fn rotate(
    db: impl PgExecutor<'_>,
    id: Uuid,
    current_hash: &[u8],
    new_hash: &[u8],
) -> sqlx::Result<bool> {
    let rotated = sqlx::query!(
        r#"
        UPDATE sessions
        SET refresh_token_hash = $3, refresh_generation = refresh_generation + 1, rotated_at = now()
        WHERE id = $1 AND refresh_token_hash = $2 AND revoked_at IS NULL AND expires_at > now()
        "#,
        id,
        current_hash,
        new_hash
    )
    .execute(db)
    .await?;
    Ok(rotated.rows_affected() == 1)
}

/// Revokes a session (idempotent: the first reason stays).
#[tracing::instrument(name = "Revoke a session", skip(db))]
pub async fn revoke(db: impl PgExecutor<'_>, id: Uuid, reason: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2 WHERE id = $1 AND revoked_at IS NULL",
        id,
        reason
    )
    .execute(db)
    .await
    .map(|_| ())
}
