//! StreamBank's service layer: the one place that holds the bank's rules.
//!
//! REST handlers, gRPC methods and the gateway decode a request, call a method of [`Bank`], and encode
//! what it returns; none of them validates, authorizes or touches a transaction. Each method parses its
//! raw input into domain types (reporting every bad field at once), checks who may do what, and calls
//! the store, whose single statements write the business rows together with their outbox event.
//!
//! # Layout
//!
//! - [`error`]: [`Error`], typed outcomes (`InsufficientFunds`, `CurrencyMismatch`, ...) with the
//!   transport-neutral [`Code`] and reason each maps to.
//! - [`bank`]: [`Bank`] and [`Caller`], the shared state every operation runs against.
//! - [`stats`]: [`Stats`], the counters the bank and its batcher keep about themselves.
//! - [`users`]: registering users (argon2id off the runtime) and reading them.
//! - [`accounts`]: opening, reading and listing accounts; statements.
//! - [`money`]: deposits and transfers, with bounded retries of transient failures.
//! - [`batch`]: group commit: concurrent transfers written as one statement and one transaction.
//! - [`replica`]: lists on a streaming replica, and how a caller still reads their own writes there.
//! - [`sessions`]: [`Sessions`], login, refresh-token rotation with reuse detection, logout, and the
//!   per-request authentication that makes revocation immediate.
//! - [`password`]: argon2id hashing and verification.
//! - `retry`: reads that ride out a dropped database connection.
//! - [`verification`]: email verification secrets and the link that uses them.

pub mod accounts;
pub mod bank;
pub mod batch;
pub mod effects;
pub mod error;
pub mod money;
pub mod password;
pub mod replica;
mod retry;
pub mod sessions;
pub mod stats;
pub mod users;
pub mod verification;

pub use bank::{Bank, Caller, page_request};
pub use batch::BatchOptions;
pub use error::{Code, Error};
pub use money::{TransferRequest, TransferResult};
pub use replica::{ReadRoute, ReplicaOptions, SharedWrites};
pub use sessions::{Authenticated, ClientMeta, Credentials, Sessions};
pub use stats::Stats;
pub use streambank_domain::{
    Account, Deposit, Entry, Notification, Page, PageRequest, Role, Transfer,
};
pub use streambank_store::Timestamp;
pub use users::{RegisterUser, User, UserOptions};
pub use verification::EmailVerification;

pub type Result<T, E = Error> = std::result::Result<T, E>;
