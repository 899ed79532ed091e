//! Metrics and the one log line per call.

use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;

use super::{Answer, Around, Inner, Payload};

/// Counts every call by method and status code, and times it (into the API's Prometheus registry).
/// Unary methods put a failure's `grpc-status` in the response headers (trailers-only), a success's in
/// the trailers, so a response without one in its headers is `OK`. A path that is not one of
/// StreamBank's methods, health or reflection is counted as `unknown`, so that clients cannot grow
/// the number of series.
#[derive(Debug, Clone)]
pub struct CallMetrics {
    metrics: crate::contract::metrics::ApiMetrics,
    known: Arc<std::collections::HashSet<String>>,
}

impl CallMetrics {
    pub fn new(metrics: crate::contract::metrics::ApiMetrics) -> Self {
        let pool = streambank_proto::descriptor_pool();
        let mut known: std::collections::HashSet<String> = streambank_proto::SERVICES
            .iter()
            .filter_map(|name| pool.get_service_by_name(name))
            .flat_map(|service| {
                service
                    .methods()
                    .map(|m| format!("/{}/{}", service.full_name(), m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        known.extend(
            [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
            .map(str::to_owned),
        );
        Self {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl Around for CallMetrics {
    fn around<S: Inner<B, R>, B: Payload, R: Payload + Default>(
        &self,
        mut inner: S,
        request: Request<B>,
    ) -> Answer<R, S::Error> {
        let path = request.uri().path();
        let method = if self.known.contains(path) {
            path.to_owned()
        } else {
            "unknown".to_owned()
        };
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        let response = inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            let elapsed = started.elapsed();
            metrics.record_grpc(&method, code, elapsed);
            log_call(&method, code, elapsed);
            Ok(response)
        })
    }
}

/// The codes that say the caller asked for something it may not have (REST's 4xx).
const REFUSALS: [tonic::Code; 11] = [
    tonic::Code::Cancelled,
    tonic::Code::InvalidArgument,
    tonic::Code::NotFound,
    tonic::Code::AlreadyExists,
    tonic::Code::PermissionDenied,
    tonic::Code::ResourceExhausted,
    tonic::Code::FailedPrecondition,
    tonic::Code::Aborted,
    tonic::Code::OutOfRange,
    tonic::Code::Unimplemented,
    tonic::Code::Unauthenticated,
];

/// The call's one log line, inside its span (so that the log formatter can attach the trace id): the
/// method (`/package.Service/Method`, or `unknown`), the `grpc-status` when the answer's headers carry
/// it (an error; a success carries it in the trailers) and the latency until those headers, in
/// milliseconds. An answer and a refusal (a caller's fault, REST's 4xx) are INFO; any other code
/// (Unknown, DeadlineExceeded, Internal, Unavailable, DataLoss: REST's 5xx) is an ERROR (issue 19).
fn log_call(method: &str, code: tonic::Code, elapsed: Duration) {
    let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    let status = code as i32;
    if code == tonic::Code::Ok {
        tracing::info!(
            rpc.method = method,
            grpc.status = status,
            latency_ms,
            "call answered"
        );
    } else if REFUSALS.contains(&code) {
        tracing::info!(rpc.method = method, grpc.status = status, code = ?code, latency_ms, "call refused");
    } else {
        tracing::error!(rpc.method = method, grpc.status = status, code = ?code, latency_ms, "call failed");
    }
}
