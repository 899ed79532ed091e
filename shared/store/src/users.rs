//! Users: registration (with its `user.registered` event) and lookups.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use streambank_events::EventType;

use crate::EventMeta;

/// A user as the bank shows it; the password hash stays inside the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub full_name: String,
    pub role: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    pub password_changed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

/// The columns of a new user, already validated and hashed by the service layer.
#[derive(Debug, Clone, Copy)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub email: &'a str,
    pub full_name: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
    pub verified: bool,
}

/// Inserts a user and its `user.registered` outbox row in one statement.
///
/// Fails with a unique violation on `users_username_key` or `users_email_key` when the name or the
/// address (case-insensitively) is taken.
#[tracing::instrument(name = "Insert a user and its user.registered event", skip_all, fields(event_id = %event.id))]
pub async fn insert(
    db: impl PgExecutor<'_>,
    user: NewUser<'_>,
    event: &EventMeta,
) -> sqlx::Result<UserRow> {
    let event_type = EventType::UserRegistered;
    sqlx::query_as!(
        UserRow,
        r#"
        WITH new_user AS (
            INSERT INTO users (username, email, full_name, password_hash, role, email_verified_at)
            VALUES ($1, $2, $3, $4, $5, CASE WHEN $6::boolean THEN now() END)
            RETURNING id, username, email, full_name, role, email_verified_at, password_changed_at, created_at
        ), event AS (
            INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
            SELECT $7, $8, id::text, $9,
                   jsonb_build_object('user_id', id, 'username', username, 'email', email, 'full_name', full_name),
                   $10
            FROM new_user
        )
        SELECT id AS "id!", username AS "username!", email AS "email!", full_name AS "full_name!",
               role AS "role!", email_verified_at, password_changed_at AS "password_changed_at!",
               created_at AS "created_at!"
        FROM new_user
        "#,
        user.username,
        user.email,
        user.full_name,
        user.password_hash,
        user.role,
        user.verified,
        event.id,
        event_type.aggregate().as_str(),
        event_type.as_str(),
        event.traceparent,
    )
    .fetch_one(db)
    .await
}

#[tracing::instrument(name = "Fetch a user by id", skip(db))]
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"
        SELECT id, username, email, full_name, role, email_verified_at, password_changed_at, created_at
        FROM users WHERE id = $1
        "#,
        id
    )
    .fetch_optional(db)
    .await
}

#[tracing::instrument(name = "Fetch a user by username", skip(db))]
pub async fn get_by_username(
    db: impl PgExecutor<'_>,
    username: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"
        SELECT id, username, email, full_name, role, email_verified_at, password_changed_at, created_at
        FROM users WHERE username = $1
        "#,
        username
    )
    .fetch_optional(db)
    .await
}

/// Changes a user's role; `None` when there is no such user.
#[tracing::instrument(name = "Set a user's role", skip(db))]
pub async fn set_role(
    db: impl PgExecutor<'_>,
    username: &str,
    role: &str,
) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"
        UPDATE users SET role = $2 WHERE username = $1
        RETURNING id, username, email, full_name, role, email_verified_at, password_changed_at, created_at
        "#,
        username,
        role
    )
    .fetch_optional(db)
    .await
}
