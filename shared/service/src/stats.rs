//! The service layer's counters about itself, kept by the bank and its transfer batcher, and exported
//! as metrics by the processes.

use std::sync::atomic::{AtomicU64, Ordering};

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
