//! StreamBank's Postgres store: every SQL statement the bank sends lives in this crate.
//!
//! Queries are checked at compile time against the schema in `migrations/` (sqlx's `query!` macros, with
//! the cache committed under `.sqlx/`, so builds need no database). Each state change writes its outbox
//! row **in the same statement** as the business rows, so an event exists exactly when its change does.
//! Money movements are single statements too: one round trip, one implicit transaction, rows locked in
//! ascending id order (see [`ledger`]).
//!
//! # Layout
//!
//! - [`MIGRATOR`]: the schema, embedded from `migrations/`.
//! - [`outbox`]: [`EventMeta`], the id and trace context every event-writing statement takes.
//! - [`users`]: registering users and reading them back.
//! - [`accounts`]: opening and reading accounts.
//! - [`ledger`]: deposits, transfers, statements and transfer history.
//! - [`sessions`]: logins, refresh-token rotation and revocation.
//! - [`idempotency`]: Idempotency-Key records for transfers.
//! - [`verifications`]: email verifications and the link that uses them.
//! - [`notifications`]: what users are told about their money.
//! - [`relay`]: claiming, publishing and retaining outbox rows.
//! - [`consumers`]: processed events, notifications and email deliveries (effects exactly once).
//! - [`dead_letters`]: stream entries a consumer group gave up on.
//! - [`errors`]: telling constraint violations apart by constraint name.
//! - [`wal`]: WAL positions, so that a caller reads their own writes on a streaming replica.

pub mod accounts;
pub mod consumers;
pub mod dead_letters;
pub mod errors;
pub mod idempotency;
pub mod ledger;
pub mod notifications;
pub mod outbox;
pub mod relay;
pub mod sessions;
pub mod users;
pub mod verifications;
pub mod wal;

pub use errors::{constraint_name, is_connection_error, is_retryable};
pub use outbox::EventMeta;

/// The timestamp type of every `timestamptz` column.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// Pool settings for every process that talks to the bank's database.
///
/// `test_before_acquire` is off: sqlx's default pings every connection before handing it out, one extra
/// round trip per statement; it cost a quarter of the api's read throughput (`docs/benchmarks.md`). A
/// connection the server ended while it sat in the pool fails its first statement instead, and the pool
/// drops it; the service layer runs again what is safe to run again (reads, idempotent transfers, the
/// transfer batches), so callers do not see it.
pub fn pool_options(max_connections: u32) -> sqlx::postgres::PgPoolOptions {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(max_connections)
        .test_before_acquire(false)
        .acquire_timeout(std::time::Duration::from_secs(5))
}

/// The schema, from the repository's `migrations/` folder (the only place it is defined).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
