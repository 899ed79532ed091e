//! Reads that ride out a dropped database connection.
//!
//! The pool does not ping a connection before handing it out (that is a round trip per statement, and
//! cost a quarter of the read throughput in `docs/benchmarks.md`). A connection the server ended while it
//! sat in the pool (`pg_terminate_backend`, a restart, a failover) therefore fails the first statement
//! sent on it, and the pool drops it. A read is safe to send again, so [`read`] does, on another
//! connection. Writes have their own ways: an idempotent transfer runs its whole transaction again (the
//! key tells whether it committed), the transfer batcher runs its batch again (the outbox's event id
//! stops a committed one from moving money twice).

use std::future::Future;
use std::time::Duration;

use crate::{Error, Result};

/// Runs a read, and again on another pooled connection (up to five tries, 10 to 80 ms apart) while the
/// connection it ran on turns out to have been ended by the server.
pub(crate) async fn read<T, F, Fut>(statement: F) -> Result<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = sqlx::Result<T>>,
{
    let mut tries: u64 = 1;
    loop {
        match statement().await {
            Err(e) if streambank_store::is_connection_error(&e) && tries < 5 => {
                tracing::warn!(error = %e, "a database connection was gone; reading again on another");
                tokio::time::sleep(Duration::from_millis(10 << (tries - 1))).await;
                tries += 1;
            }
            outcome => return outcome.map_err(Error::db),
        }
    }
}
