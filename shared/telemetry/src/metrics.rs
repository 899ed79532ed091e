//! Prometheus metrics through the Prometheus project's own Rust client, `prometheus-client`, served in
//! the text exposition format (version 0.0.4) that every scraper reads.
//!
//! Each process builds one [`Registry`] at start-up, registers its handful of series, and shares it
//! read-only from then on ([`Shared`]); the metric handles it keeps are cheap clones of the registered
//! ones. Every label is a field of a `#[derive(EncodeLabelSet)]` struct whose values come from a closed
//! set, so that no request, however strange, adds a series.
//!
//! `prometheus-client` writes a counter's samples as `<name>_total`, so counters are registered
//! without that suffix; it also ends every help text with a full stop, so they are written without one.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, get};
use prometheus_client::encoding::prometheus_text;

pub use prometheus_client::encoding::EncodeLabelSet;
pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::metrics::histogram::Histogram;
pub use prometheus_client::registry::Registry;

/// A registry once every series is registered: shared by the `/metrics` handler and nobody else.
pub type Shared = Arc<Registry>;

/// A family of histograms, one per label set, each with the buckets its constructor gives.
pub type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets in seconds, from 1 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Size buckets (rows per relay batch).
pub const SIZE_BUCKETS: [f64; 8] = [1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0];

/// A histogram over [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// A histogram over [`SIZE_BUCKETS`].
pub fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS)
}

/// A family of latency histograms, one per label set.
pub fn latency_histograms<L>() -> Histograms<L>
where
    L: Clone + std::hash::Hash + Eq,
{
    Family::new_with_constructor(latency_histogram)
}

/// The registry in the text exposition format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a `String` cannot fail.
    let _ = prometheus_text::encode(&mut out, registry);
    out
}

/// `GET /metrics`: the registry in the text exposition format, with its content type.
pub fn endpoint<S>(registry: Shared) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    get(move || async move {
        (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            render(&registry),
        )
            .into_response()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct Route {
        route: &'static str,
        status: &'static str,
    }

    #[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct RouteOnly {
        route: &'static str,
    }

    #[test]
    fn renders_the_exposition_format_with_the_series_names_as_registered() {
        let mut registry = Registry::default();
        let requests = Family::<Route, Counter>::default();
        let leader = Gauge::<i64, std::sync::atomic::AtomicI64>::default();
        let latency = latency_histograms::<RouteOnly>();
        registry.register("http_requests", "Requests", requests.clone());
        registry.register("relay_leader", "1 when leading", leader.clone());
        registry.register("latency_seconds", "Latency", latency.clone());
        let users = Route {
            route: "/v1/users",
            status: "201",
        };
        requests.get_or_create(&users).inc();
        requests.get_or_create(&users).inc();
        leader.set(1);
        latency
            .get_or_create(&RouteOnly { route: "/v1/users" })
            .observe(0.003);

        let text = render(&registry);
        assert!(
            text.contains(
                "# HELP http_requests_total Requests.\n# TYPE http_requests_total counter\n\
                 http_requests_total{route=\"/v1/users\",status=\"201\"} 2\n"
            ),
            "{text}"
        );
        assert!(text.contains("relay_leader 1\n"), "{text}");
        assert!(
            text.contains("latency_seconds_bucket{route=\"/v1/users\",le=\"0.0025\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("latency_seconds_count{route=\"/v1/users\"} 1\n"),
            "{text}"
        );
        assert_eq!(requests.get_or_create(&users).get(), 2);
    }
}
