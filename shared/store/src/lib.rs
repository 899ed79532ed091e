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
//! - [`errors`]: telling constraint violations apart by constraint name.

pub mod accounts;
pub mod errors;
pub mod ledger;
pub mod outbox;
pub mod users;

pub use errors::{constraint_name, is_retryable};
pub use outbox::EventMeta;

/// The timestamp type of every `timestamptz` column.
pub type Timestamp = chrono::DateTime<chrono::Utc>;

/// The schema, from the repository's `migrations/` folder (the only place it is defined).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");
