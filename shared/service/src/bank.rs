//! The [`Bank`]: the state every operation runs against, and who is asking ([`Caller`]).

use std::sync::{Arc, OnceLock};

use sqlx::PgPool;
use streambank_domain::Role;
use streambank_store::EventMeta;

use crate::stats::Stats;

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
