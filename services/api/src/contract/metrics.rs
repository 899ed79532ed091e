//! `/metrics`: requests by route, method and status, and a latency histogram by route (Prometheus);
//! the gRPC server records its calls in the same registry (`grpc_requests_total`, by method and code).
//!
//! Every label comes from a closed set, so that no request, however strange, adds a series: the route
//! is the matched template or `unmatched`, the method one of HTTP's nine or `other`, the status one of
//! the codes the server answers with. `/metrics` itself is served on its own listener (`METRICS_ADDR`),
//! not on the public REST one, as the relay and the worker serve theirs on `HEALTH_ADDR`.

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use streambank_telemetry::metrics::{Counter, Histogram, LATENCY_BUCKETS, Registry};

use super::http::{MatchedRoute, method_label};

#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub registry: Registry,
    requests: Counter,
    latency: Histogram,
    /// gRPC calls by method and status code (`crate::grpc::layers::MetricsLayer` records them; gateway
    /// traffic shows here too, as the gRPC calls it makes).
    pub grpc_requests: Counter,
    pub grpc_latency: Histogram,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let registry = Registry::default();
        Self {
            requests: registry.counter(
                "http_requests_total",
                "HTTP requests by route template, method and status.",
                &["route", "method", "status"],
            ),
            latency: registry.histogram(
                "http_request_duration_seconds",
                "HTTP request latency by route template.",
                &["route"],
                &LATENCY_BUCKETS,
            ),
            grpc_requests: registry.counter(
                "grpc_requests_total",
                "gRPC calls by method (/package.Service/Method) and status code name.",
                &["method", "code"],
            ),
            grpc_latency: registry.histogram(
                "grpc_request_duration_seconds",
                "gRPC call latency, until the response headers, by method.",
                &["method"],
                &LATENCY_BUCKETS,
            ),
            registry,
        }
    }
}

/// REST's middleware that records every request against its route template (`/v1/accounts/{id}`, never the
/// concrete path, so the number of series stays bounded).
pub async fn track(State(metrics): State<ApiMetrics>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    // The request's span (made before routing) learns its route here.
    tracing::Span::current().record("route", route.as_str());
    let started = Instant::now();
    let mut response = next.run(request).await;
    metrics
        .requests
        .inc(&[&route, method, response.status().as_str()]);
    metrics
        .latency
        .observe_duration(&[&route], started.elapsed());
    // For the request's log line ([`super::http::log_request`]), as the gateway leaves its own.
    response.extensions_mut().insert(MatchedRoute(route));
    response
}

/// The metrics listener's router (`METRICS_ADDR`): `/metrics` and nothing else.
pub fn router(metrics: ApiMetrics) -> Router {
    Router::new().route(
        "/metrics",
        get(move || async move { metrics.registry.render() }),
    )
}
