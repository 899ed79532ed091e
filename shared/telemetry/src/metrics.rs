//! Prometheus metrics in the text exposition format, kept in atomics: counters, gauges and histograms,
//! optionally with label values. Small on purpose: each process registers a handful of series and
//! serves `render()` at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency buckets in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Size buckets (rows per relay batch).
pub const SIZE_BUCKETS: [f64; 8] = [1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

#[derive(Debug)]
struct HistogramData {
    buckets: &'static [f64],
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in millionths, to stay in integers.
    sum_micros: AtomicU64,
}

impl HistogramData {
    fn new(buckets: &'static [f64]) -> Self {
        Self {
            buckets,
            counts: buckets.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    fn observe(&self, value: f64) {
        for (bound, count) in self.buckets.iter().zip(&self.counts) {
            if value <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((value.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }
}

#[derive(Debug)]
enum Kind {
    Counter(Mutex<BTreeMap<Vec<String>, u64>>),
    Gauge(AtomicI64),
    Gauges(Mutex<BTreeMap<Vec<String>, i64>>),
    Histogram(
        Mutex<BTreeMap<Vec<String>, Arc<HistogramData>>>,
        &'static [f64],
    ),
}

#[derive(Debug)]
struct Metric {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    kind: Kind,
}

/// A set of metrics that renders together. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    metrics: Arc<Mutex<Vec<Arc<Metric>>>>,
}

/// A counter, possibly with labels.
#[derive(Debug, Clone)]
pub struct Counter(Arc<Metric>);

/// A gauge.
#[derive(Debug, Clone)]
pub struct Gauge(Arc<Metric>);

/// A histogram, possibly with labels.
#[derive(Debug, Clone)]
pub struct Histogram(Arc<Metric>);

impl Registry {
    fn add(&self, metric: Metric) -> Arc<Metric> {
        let metric = Arc::new(metric);
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&metric));
        metric
    }

    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Counter {
        Counter(self.add(Metric {
            name,
            help,
            labels,
            kind: Kind::Counter(Mutex::default()),
        }))
    }

    pub fn gauge(&self, name: &'static str, help: &'static str) -> Gauge {
        Gauge(self.add(Metric {
            name,
            help,
            labels: &[],
            kind: Kind::Gauge(AtomicI64::new(0)),
        }))
    }

    /// A gauge with labels: one value per combination of label values.
    pub fn gauges(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> Gauge {
        Gauge(self.add(Metric {
            name,
            help,
            labels,
            kind: Kind::Gauges(Mutex::default()),
        }))
    }

    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &'static [f64],
    ) -> Histogram {
        Histogram(self.add(Metric {
            name,
            help,
            labels,
            kind: Kind::Histogram(Mutex::default(), buckets),
        }))
    }

    /// The text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for metric in self
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let kind = match metric.kind {
                Kind::Counter(_) => "counter",
                Kind::Gauge(_) | Kind::Gauges(_) => "gauge",
                Kind::Histogram(..) => "histogram",
            };
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {kind}",
                metric.name, metric.help, metric.name
            );
            match &metric.kind {
                Kind::Counter(series) => {
                    for (values, n) in series.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        let _ = writeln!(
                            out,
                            "{}{} {n}",
                            metric.name,
                            labels(metric.labels, values, None)
                        );
                    }
                }
                Kind::Gauge(v) => {
                    let _ = writeln!(out, "{} {}", metric.name, v.load(Ordering::Relaxed));
                }
                Kind::Gauges(series) => {
                    for (values, v) in series.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        let _ = writeln!(
                            out,
                            "{}{} {v}",
                            metric.name,
                            labels(metric.labels, values, None)
                        );
                    }
                }
                Kind::Histogram(series, _) => {
                    for (values, h) in series.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                        for (bound, count) in h.buckets.iter().zip(&h.counts) {
                            let le = format!("{bound}");
                            let _ = writeln!(
                                out,
                                "{}_bucket{} {}",
                                metric.name,
                                labels(metric.labels, values, Some(&le)),
                                count.load(Ordering::Relaxed)
                            );
                        }
                        let total = h.count.load(Ordering::Relaxed);
                        let _ = writeln!(
                            out,
                            "{}_bucket{} {total}",
                            metric.name,
                            labels(metric.labels, values, Some("+Inf"))
                        );
                        let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
                        let _ = writeln!(
                            out,
                            "{}_sum{} {sum}",
                            metric.name,
                            labels(metric.labels, values, None)
                        );
                        let _ = writeln!(
                            out,
                            "{}_count{} {total}",
                            metric.name,
                            labels(metric.labels, values, None)
                        );
                    }
                }
            }
        }
        out
    }
}

fn labels(names: &[&str], values: &[String], le: Option<&str>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            format!(
                "{n}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", pairs.join(","))
    }
}

impl Counter {
    pub fn inc(&self, values: &[&str]) {
        self.add(values, 1);
    }

    pub fn add(&self, values: &[&str], n: u64) {
        if let Kind::Counter(series) = &self.0.kind {
            let key = values.iter().map(|v| (*v).to_owned()).collect();
            *series
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_default() += n;
        }
    }

    /// The current value of one series (tests).
    pub fn get(&self, values: &[&str]) -> u64 {
        match &self.0.kind {
            Kind::Counter(series) => {
                let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
                series
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&key)
                    .copied()
                    .unwrap_or(0)
            }
            _ => 0,
        }
    }
}

impl Gauge {
    pub fn set(&self, value: i64) {
        if let Kind::Gauge(v) = &self.0.kind {
            v.store(value, Ordering::Relaxed);
        }
    }

    /// Sets the series of `values` (a gauge made with [`Registry::gauges`]).
    pub fn set_labeled(&self, values: &[&str], value: i64) {
        if let Kind::Gauges(series) = &self.0.kind {
            let key = values.iter().map(|v| (*v).to_owned()).collect();
            series
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key, value);
        }
    }
}

impl Histogram {
    pub fn observe(&self, values: &[&str], value: f64) {
        if let Kind::Histogram(series, buckets) = &self.0.kind {
            let key: Vec<String> = values.iter().map(|v| (*v).to_owned()).collect();
            let h = Arc::clone(
                series
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(key)
                    .or_insert_with(|| Arc::new(HistogramData::new(buckets))),
            );
            h.observe(value);
        }
    }

    pub fn observe_duration(&self, values: &[&str], d: Duration) {
        self.observe(values, d.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_exposition_format() {
        let registry = Registry::default();
        let requests = registry.counter("http_requests_total", "Requests.", &["route", "status"]);
        let leader = registry.gauge("relay_leader", "1 when leading.");
        let latency =
            registry.histogram("latency_seconds", "Latency.", &["route"], &LATENCY_BUCKETS);
        requests.inc(&["/v1/users", "201"]);
        requests.inc(&["/v1/users", "201"]);
        leader.set(1);
        latency.observe(&["/v1/users"], 0.003);
        let text = registry.render();
        assert!(text.contains("# TYPE http_requests_total counter\nhttp_requests_total{route=\"/v1/users\",status=\"201\"} 2\n"), "{text}");
        assert!(text.contains("relay_leader 1\n"), "{text}");
        assert!(
            text.contains("latency_seconds_bucket{route=\"/v1/users\",le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_bucket{route=\"/v1/users\",le=\"0.005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_count{route=\"/v1/users\"} 1\n"),
            "{text}"
        );
        assert_eq!(requests.get(&["/v1/users", "201"]), 2);
    }
}
