//! The worker's Prometheus metrics (served at `/metrics` on `HEALTH_ADDR`).

use std::sync::Arc;
use std::time::Duration;

use streambank_telemetry::metrics::{
    Counter, EncodeLabelSet, Family, Gauge, Histograms, Registry, Shared, latency_histograms,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    group: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabels {
    group: &'static str,
    stream: &'static str,
}

/// The worker's series, by consumer group (and outcome or stream).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub registry: Shared,
    processed: Family<OutcomeLabels, Counter>,
    retried: Family<GroupLabel, Counter>,
    dead_lettered: Family<GroupLabel, Counter>,
    handling: Histograms<GroupLabel>,
    pending: Family<StreamLabels, Gauge>,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let processed = Family::default();
        registry.register(
            "worker_events",
            "Entries handled, by group and outcome (ok or error)",
            processed.clone(),
        );
        let retried = Family::default();
        registry.register(
            "worker_retries",
            "Failed entries claimed again for a retry, by group",
            retried.clone(),
        );
        let dead_lettered = Family::default();
        registry.register(
            "worker_dead_lettered",
            "Entries moved to the dead-letter stream, by group",
            dead_lettered.clone(),
        );
        let handling = latency_histograms();
        registry.register(
            "worker_handling_seconds",
            "Time from reading an entry to its outcome (entries of one read are handled together), by group",
            handling.clone(),
        );
        let pending = Family::default();
        registry.register(
            "worker_pending_entries",
            "Entries delivered and not yet acknowledged, by group and stream, as of this process's last sweep",
            pending.clone(),
        );
        Self {
            registry: Arc::new(registry),
            processed,
            retried,
            dead_lettered,
            handling,
            pending,
        }
    }
}

impl WorkerMetrics {
    /// The series as `/metrics` serves them.
    pub fn render(&self) -> String {
        streambank_telemetry::metrics::render(&self.registry)
    }

    /// One entry's outcome and how long it took from the read.
    pub(crate) fn handled(&self, group: &'static str, ok: bool, elapsed: Duration) {
        self.handling
            .get_or_create(&GroupLabel { group })
            .observe(elapsed.as_secs_f64());
        let outcome = if ok { "ok" } else { "error" };
        self.processed
            .get_or_create(&OutcomeLabels { group, outcome })
            .inc();
    }

    pub(crate) fn retried(&self, group: &'static str, entries: usize) {
        self.retried
            .get_or_create(&GroupLabel { group })
            .inc_by(entries as u64);
    }

    pub(crate) fn dead_lettered(&self, group: &'static str) {
        self.dead_lettered
            .get_or_create(&GroupLabel { group })
            .inc();
    }

    pub(crate) fn pending(&self, group: &'static str, stream: &'static str, entries: u64) {
        self.pending
            .get_or_create(&StreamLabels { group, stream })
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }
}
