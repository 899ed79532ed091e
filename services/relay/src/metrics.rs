//! The relay's Prometheus metrics (served at `/metrics` on `HEALTH_ADDR`).

use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use streambank_telemetry::metrics::{
    Counter, EncodeLabelSet, Family, Gauge, Histogram, Registry, Shared, latency_histogram,
    size_histogram,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StreamLabel {
    stream: &'static str,
}

#[derive(Debug, Clone)]
pub struct RelayMetrics {
    pub registry: Shared,
    published: Family<StreamLabel, Counter>,
    batch_size: Histogram,
    lag: Histogram,
    leader: Gauge<i64, AtomicI64>,
    partitions_led: Gauge<i64, AtomicI64>,
    unreplicated: Counter,
}

impl Default for RelayMetrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let published = Family::default();
        registry.register(
            "relay_events_published",
            "Events published to Redis, by stream",
            published.clone(),
        );
        let batch_size = size_histogram();
        registry.register(
            "relay_batch_size",
            "Rows per published batch",
            batch_size.clone(),
        );
        let lag = latency_histogram();
        registry.register(
            "relay_publish_lag_seconds",
            "From the writing transaction's start to the event's XADD",
            lag.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "relay_leader",
            "1 while this process holds leadership and publishes, 0 on standby",
            leader.clone(),
        );
        let partitions_led = Gauge::default();
        registry.register(
            "relay_partitions_led",
            "Stream partitions this process leads and publishes",
            partitions_led.clone(),
        );
        let unreplicated = Counter::default();
        registry.register(
            "relay_unreplicated_batches",
            "Batches fewer replicas than RELAY_MIN_REPLICAS acknowledged (WAIT), left to go again",
            unreplicated.clone(),
        );
        Self {
            registry: Arc::new(registry),
            published,
            batch_size,
            lag,
            leader,
            partitions_led,
            unreplicated,
        }
    }
}

impl RelayMetrics {
    /// The series as `/metrics` serves them.
    pub fn render(&self) -> String {
        streambank_telemetry::metrics::render(&self.registry)
    }

    /// A published batch of `rows` rows.
    pub(crate) fn batch(&self, rows: usize) {
        self.batch_size.observe(rows as f64);
    }

    /// One event on `stream`, `lag` seconds after its transaction started.
    pub(crate) fn published(&self, stream: &'static str, lag: f64) {
        self.published.get_or_create(&StreamLabel { stream }).inc();
        self.lag.observe(lag);
    }

    /// How many partitions this process leads (`relay_leader` is 1 while it leads any).
    pub(crate) fn leading(&self, partitions: usize) {
        self.leader.set(i64::from(partitions > 0));
        self.partitions_led
            .set(i64::try_from(partitions).unwrap_or(i64::MAX));
    }

    /// A batch `WAIT` found short of replicas.
    pub(crate) fn unreplicated(&self) {
        self.unreplicated.inc();
    }
}
