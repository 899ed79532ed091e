//! The [`Bank`]: the state every operation runs against, and who is asking ([`Caller`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::PgPool;
use streambank_domain::Role;
use streambank_store::EventMeta;

/// StreamBank's service layer. Cheap to clone: it is a pool handle and shared counters.
#[derive(Debug, Clone)]
pub struct Bank {
    pub(crate) pool: PgPool,
    pub(crate) stats: Arc<Stats>,
}

/// The authenticated user on whose behalf an operation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user_id: i64,
    pub role: Role,
}

impl Caller {
    pub fn is_banker(&self) -> bool {
        self.role == Role::Banker
    }
}

/// Counters the service layer keeps about itself (exported as metrics by the processes).
#[derive(Debug, Default)]
pub struct Stats {
    transfers_retried: AtomicU64,
}

impl Stats {
    /// How many times a transfer statement hit a transient failure (serialization or deadlock) and was
    /// run again. The ledger's lock order should keep this at zero.
    pub fn transfers_retried(&self) -> u64 {
        self.transfers_retried.load(Ordering::Relaxed)
    }

    pub(crate) fn count_transfer_retry(&self) {
        self.transfers_retried.fetch_add(1, Ordering::Relaxed);
    }
}

impl Bank {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            stats: Arc::default(),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The outbox metadata for an event caused by the current request: a fresh v7 id and the current
    /// span's trace context.
    pub(crate) fn event_meta() -> EventMeta {
        EventMeta::new(streambank_telemetry::current_traceparent())
    }
}
