//! `/metrics`: requests by route, method and status, and a latency histogram by route (Prometheus);
//! the gRPC server records its calls in the same registry (`grpc_requests_total`, by method and code).
//! With a read replica, the service layer's count of where lists ran is read at each scrape
//! (`replica_reads_total`, [`ReplicaReads`]).
//!
//! Every label comes from a closed set, so that no request, however strange, adds a series: the route
//! is the matched template or `unmatched`, the method one of HTTP's nine or `other`, the status one of
//! the codes the server answers with. `/metrics` itself is served on its own listener (`METRICS_ADDR`),
//! not on the public REST one, as the relay and the worker serve theirs on `HEALTH_ADDR`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::ConstCounter;
use streambank_service::{Bank, ReadRoute};
use streambank_telemetry::metrics::{
    Counter, EncodeLabelSet, Family, Histograms, Registry, Shared, endpoint, latency_histograms,
};

use super::http::{MatchedRoute, method_label};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: &'static str,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// The API's series: REST's requests and the gRPC server's calls (gateway traffic shows in the
/// latter, as the gRPC calls it makes).
#[derive(Debug, Clone)]
pub struct ApiMetrics {
    pub registry: Shared,
    requests: Family<HttpLabels, Counter>,
    latency: Histograms<RouteLabel>,
    grpc_requests: Family<GrpcLabels, Counter>,
    grpc_latency: Histograms<MethodLabel>,
}

impl ApiMetrics {
    /// The API's series, and the bank's read routing when it has a read replica (without one, no
    /// series is added).
    pub fn new(bank: &Bank) -> Self {
        let mut registry = Registry::default();
        if bank.has_read_replica() {
            registry.register_collector(Box::new(ReplicaReads(bank.clone())));
        }
        let requests = Family::default();
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        let latency = latency_histograms();
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route template",
            latency.clone(),
        );
        let grpc_requests = Family::default();
        registry.register(
            "grpc_requests",
            "gRPC calls by method (/package.Service/Method) and status code name",
            grpc_requests.clone(),
        );
        let grpc_latency = latency_histograms();
        registry.register(
            "grpc_request_duration_seconds",
            "gRPC call latency, until the response headers, by method",
            grpc_latency.clone(),
        );
        Self {
            registry: Arc::new(registry),
            requests,
            latency,
            grpc_requests,
            grpc_latency,
        }
    }
}

impl ApiMetrics {
    /// One REST request, by its route template (never the concrete path).
    fn record_http(&self, route: &str, method: &'static str, status: &str, elapsed: Duration) {
        self.requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method,
                status: status.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabel {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// One gRPC call, by method (`/package.Service/Method`, or `unknown`) and code name.
    pub fn record_grpc(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        self.grpc_requests
            .get_or_create(&GrpcLabels {
                method: method.to_owned(),
                code: format!("{code:?}"),
            })
            .inc();
        self.grpc_latency
            .get_or_create(&MethodLabel {
                method: method.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}

/// The service layer's counts of where lists ran, read at each scrape.
#[derive(Debug)]
struct ReplicaReads(Bank);

impl Collector for ReplicaReads {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.0.stats();
        let counter = ConstCounter::new(0u64);
        let mut reads = encoder.encode_descriptor(
            "replica_reads",
            "Lists (statements, transfer histories, notifications) by the server that answered and what \
             the caller's last write made of it: none, replayed, waited, behind or failed",
            None,
            counter.metric_type(),
        )?;
        for route in ReadRoute::ALL {
            let labels = [("server", route.server()), ("check", route.check())];
            ConstCounter::new(stats.replica_reads(route)).encode(reads.encode_family(&labels)?)?;
        }
        let (checks, waited) = stats.replica_checks();
        ConstCounter::new(checks).encode(encoder.encode_descriptor(
            "replica_checks",
            "Lists that asked the read replica how far it had replayed, because their caller had written",
            None,
            counter.metric_type(),
        )?)?;
        ConstCounter::new(waited.as_secs_f64()).encode(encoder.encode_descriptor(
            "replica_check_seconds",
            "Time those lists spent asking and waiting for the replica",
            None,
            counter.metric_type(),
        )?)
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
    metrics.record_http(
        &route,
        method,
        response.status().as_str(),
        started.elapsed(),
    );
    // For the request's log line ([`super::http::log_request`]), as the gateway leaves its own.
    response.extensions_mut().insert(MatchedRoute(route));
    response
}

/// The metrics listener's router (`METRICS_ADDR`): `/metrics` and nothing else.
pub fn router(metrics: ApiMetrics) -> Router {
    Router::new().route("/metrics", endpoint(metrics.registry))
}
