//! The worker's Prometheus metrics.

/// The worker's Prometheus metrics (served at `/metrics` on `HEALTH_ADDR`).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub registry: streambank_telemetry::metrics::Registry,
    pub(crate) processed: streambank_telemetry::metrics::Counter,
    pub(crate) retried: streambank_telemetry::metrics::Counter,
    pub(crate) dead_lettered: streambank_telemetry::metrics::Counter,
    pub(crate) handling: streambank_telemetry::metrics::Histogram,
    pub(crate) pending: streambank_telemetry::metrics::Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        use streambank_telemetry::metrics::{LATENCY_BUCKETS, Registry};
        let registry = Registry::default();
        Self {
            processed: registry.counter(
                "worker_events_total",
                "Entries handled, by group and outcome (ok or error).",
                &["group", "outcome"],
            ),
            retried: registry.counter(
                "worker_retries_total",
                "Failed entries claimed again for a retry, by group.",
                &["group"],
            ),
            dead_lettered: registry.counter(
                "worker_dead_lettered_total",
                "Entries moved to the dead-letter stream, by group.",
                &["group"],
            ),
            handling: registry.histogram(
                "worker_handling_seconds",
                "Time from reading an entry to its outcome (entries of one read are handled together), by group.",
                &["group"],
                &LATENCY_BUCKETS,
            ),
            pending: registry.gauges(
                "worker_pending_entries",
                "Entries delivered and not yet acknowledged, by group and stream, as of this process's last sweep.",
                &["group", "stream"],
            ),
            registry,
        }
    }
}
