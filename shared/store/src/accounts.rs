//! Accounts: opening one (with its `account.opened` event) and reading them.

use sqlx::PgExecutor;
use streambank_domain::Account;
use streambank_events::EventType;

use crate::EventMeta;

/// Opens an account with a zero balance and writes its `account.opened` event, in one statement.
///
/// Fails with a unique violation on `accounts_owner_currency_key` when the owner already has an account
/// in that currency, and a foreign-key violation when the owner does not exist.
#[tracing::instrument(name = "Insert an account and its account.opened event", skip(db, event), fields(event_id = %event.id))]
pub async fn insert(
    db: impl PgExecutor<'_>,
    owner_id: i64,
    currency: &str,
    event: &EventMeta,
) -> sqlx::Result<Account> {
    let event_type = EventType::AccountOpened;
    sqlx::query_as!(
        Account,
        r#"
        WITH new_account AS (
            INSERT INTO accounts (owner_id, currency) VALUES ($1, $2)
            RETURNING id, owner_id, currency, balance, created_at
        ), event AS (
            INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, traceparent)
            SELECT $3, $4, id::text, $5,
                   jsonb_build_object('account_id', id, 'owner_id', owner_id, 'currency', currency),
                   $6
            FROM new_account
        )
        SELECT id AS "id!", owner_id AS "owner_id!", currency AS "currency!", balance AS "balance!",
               created_at AS "created_at!"
        FROM new_account
        "#,
        owner_id,
        currency,
        event.id,
        event_type.aggregate().as_str(),
        event_type.as_str(),
        event.traceparent,
    )
    .fetch_one(db)
    .await
}

#[tracing::instrument(name = "Fetch an account", skip(db))]
pub async fn get(db: impl PgExecutor<'_>, id: i64) -> sqlx::Result<Option<Account>> {
    sqlx::query_as!(
        Account,
        "SELECT id, owner_id, currency, balance, created_at FROM accounts WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// An owner's accounts in id order, after the keyset cursor `after`.
#[tracing::instrument(name = "List an owner's accounts", skip(db))]
pub async fn list_by_owner(
    db: impl PgExecutor<'_>,
    owner_id: i64,
    after: Option<i64>,
    limit: i64,
) -> sqlx::Result<Vec<Account>> {
    sqlx::query_as!(
        Account,
        r#"
        SELECT id, owner_id, currency, balance, created_at FROM accounts
        WHERE owner_id = $1 AND id > COALESCE($2::bigint, 0)
        ORDER BY id
        LIMIT $3
        "#,
        owner_id,
        after,
        limit
    )
    .fetch_all(db)
    .await
}
