//! The [`Bank`]: the state every operation runs against, and who is asking ([`Caller`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use streambank_domain::Role;
use streambank_store::EventMeta;

/// StreamBank's service layer. Cheap to clone: it is a pool handle and shared counters.
#[derive(Debug, Clone)]
pub struct Bank {
    pub(crate) pool: PgPool,
    /// Where lists run, when there is a streaming replica ([`crate::replica`]).
    pub(crate) replica: Option<Arc<crate::replica::ReadReplica>>,
    pub(crate) stats: Arc<Stats>,
    /// Started on the first transfer, on the runtime that makes it.
    pub(crate) batcher: Arc<OnceLock<crate::batch::Batcher>>,
    batch_options: crate::BatchOptions,
}

/// Parses a list call's `page_size` and `page_token`; bad values are a validation error naming each
/// field, whichever transport they came from.
pub fn page_request(
    size: Option<i64>,
    token: Option<&str>,
) -> crate::Result<streambank_domain::PageRequest> {
    streambank_domain::PageRequest::parse(size, token).map_err(|bad| {
        crate::Error::Validation(
            bad.into_iter()
                .map(|(field, description)| streambank_domain::FieldViolation {
                    field: field.to_owned(),
                    description,
                })
                .collect(),
        )
    })
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
    transfer_batches: AtomicU64,
    transfers_batched: AtomicU64,
    pub(crate) reads: crate::replica::ReadCounters,
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

    /// How many transfer batches were written, and how many transfers they held in all.
    pub fn transfer_batches(&self) -> (u64, u64) {
        (
            self.transfer_batches.load(Ordering::Relaxed),
            self.transfers_batched.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn count_transfer_batch(&self, transfers: usize) {
        self.transfer_batches.fetch_add(1, Ordering::Relaxed);
        self.transfers_batched
            .fetch_add(transfers as u64, Ordering::Relaxed);
    }

    /// How many lists were routed as `route` (all zero without a read replica).
    pub fn replica_reads(&self, route: crate::ReadRoute) -> u64 {
        self.reads.routed(route)
    }

    /// How many lists asked the read replica how far it had replayed (their caller had written), and
    /// the time that took them in all, waiting for it included.
    pub fn replica_checks(&self) -> (u64, std::time::Duration) {
        self.reads.checks()
    }
}

impl Bank {
    pub fn new(pool: PgPool) -> Self {
        Self::with_batching(pool, crate::BatchOptions::default())
    }

    /// A bank whose transfers are batched as `options` say (see [`crate::batch`]).
    pub fn with_batching(pool: PgPool, options: crate::BatchOptions) -> Self {
        Self {
            pool,
            replica: None,
            stats: Arc::default(),
            batcher: Arc::default(),
            batch_options: options,
        }
    }

    pub(crate) fn batcher(&self) -> &crate::batch::Batcher {
        self.batcher.get_or_init(|| {
            crate::batch::Batcher::start(
                self.pool.clone(),
                self.replica.clone(),
                Arc::clone(&self.stats),
                self.batch_options,
            )
        })
    }

    /// Whether Postgres answers (for readiness checks).
    pub async fn ping(&self) -> crate::Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(drop)
            .map_err(|e| crate::Error::Internal(e.into()))
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
