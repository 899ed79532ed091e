//! The layers REST and the gateway wrap around their routes, in one order, so that the two HTTP
//! listeners answer alike (the gRPC server assembles its own in `grpc::Grpc::serve`), outermost first:
//!
//! 1. request ids: `x-request-id`, generated when absent, echoed, on the request's span;
//! 2. security headers on every answer ([`security_headers`]);
//! 3. a tracing span per request (`http request` or `gateway request`, with the method, the route
//!    template once routing has found it, and the request id), continuing a caller's `traceparent`;
//! 4. one log line per request, inside that span ([`log_request`]);
//! 5. the header limit (`431 HEADERS_TOO_LARGE`) and the declared body limit (`413 BODY_TOO_LARGE`);
//! 6. CORS;
//! 7. the request timeout (`503 unavailable TIMEOUT`).

use std::time::{Duration, Instant};

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use streambank_gateway::MatchedRoute;
pub use streambank_gateway::body::describe_json_error;
pub use streambank_gateway::proxy::is_json;

use super::error::reason_response;
use super::{REQUEST_ID, Reason};
use crate::config::Config;

/// The most a request's headers may come to, counted as HTTP/2 counts a header list (RFC 7541 §4.1:
/// name, value and 32 bytes a field). hyper's HTTP/1.1 reader would take some 400 KiB; a bound this
/// size answers in the contract's shape instead, and keeps what the gateway forwards well inside the
/// gRPC server's [`crate::grpc::MAX_HEADER_LIST_BYTES`], so that REST and the gateway answer alike.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// What the layers take from the process configuration.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub cors_allowed_origins: Vec<String>,
}

impl From<&Config> for HttpOptions {
    fn from(config: &Config) -> Self {
        Self {
            body_limit_bytes: config.body_limit_bytes,
            request_timeout: config.request_timeout,
            cors_allowed_origins: config.cors_allowed_origins.clone(),
        }
    }
}

/// Which HTTP listener a router serves: it names the request's span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Rest,
    Gateway,
}

/// `routes` behind the layers, with CORS allowing `methods` (and `OPTIONS`).
pub fn layers(
    routes: Router,
    listener: Listener,
    options: &HttpOptions,
    methods: Vec<Method>,
) -> Router {
    routes.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(axum::middleware::from_fn(security_headers))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(move |request: &Request| span(listener, request))
                    // The one line per request is `log_request`'s, whatever the status.
                    .on_response(())
                    .on_failure(()),
            )
            .layer(axum::middleware::from_fn(log_request))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(header_limit))
            .layer(axum::middleware::from_fn_with_state(
                options.body_limit_bytes,
                declared_body_limit,
            ))
            .layer(cors(&options.cors_allowed_origins, methods))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                reason_response(Reason::Timeout, "the request took too long".to_owned(), &[])
            }))
            .timeout(options.request_timeout),
    )
}

/// The request's span: the method (a closed set), the route template (recorded once routing has
/// found it; never the URI, whose query can hold a verification code or a token) and the request id.
/// A caller that is itself traced passes its W3C `traceparent`; the request continues it.
fn span(listener: Listener, request: &Request) -> tracing::Span {
    let request_id = request_id(request.headers());
    let method = method_label(request.method());
    let route = tracing::field::Empty;
    let span = match listener {
        Listener::Rest => tracing::info_span!("http request", method, route, request_id),
        Listener::Gateway => tracing::info_span!("gateway request", method, route, request_id),
    };
    continue_trace(&span, request.headers());
    span
}

/// The request's `x-request-id` (set by the request-id layer when the caller sent none).
pub fn request_id(headers: &HeaderMap) -> &str {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// Makes `span` continue the caller's trace when the request carries a W3C `traceparent` (HTTP
/// header or gRPC metadata alike).
pub fn continue_trace(span: &tracing::Span, headers: &HeaderMap) {
    if let Some(traceparent) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        streambank_telemetry::continue_trace(span, traceparent);
    }
}

/// One line per request, inside its span (so that the log formatter can attach the trace id): the
/// method, the route template (`unmatched` when no route took it), the status and the latency in
/// milliseconds. An answer is INFO, and so is a refusal (4xx: the caller's doing, seen but paging no
/// one); only a failure (5xx) is an ERROR, for an operator to look at (issue 19).
pub async fn log_request(request: Request, next: Next) -> Response {
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let latency_ms = (started.elapsed().as_secs_f64() * 100_000.0).round() / 100.0;
    let route = response
        .extensions()
        .get::<MatchedRoute>()
        .map_or("unmatched", |r| r.0.as_str());
    let status = response.status();
    let code = status.as_u16();
    if status.is_server_error() {
        tracing::error!(method, route, status = code, latency_ms, "request failed");
    } else if status.is_client_error() {
        tracing::info!(method, route, status = code, latency_ms, "request refused");
    } else {
        tracing::info!(method, route, status = code, latency_ms, "request answered");
    }
    response
}

/// The method as a metrics label: one of HTTP's nine standard methods, or `other` (a client may send
/// any token as a method; each would otherwise be a series of its own).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Headers every answer carries, on REST and the gateway (unless a handler set its own): an API that
/// answers JSON, some of it tokens and balances, is cached nowhere, sniffed as nothing else, framed
/// by no page, and sends no `Referer` onwards (the verification page's URL holds its code).
/// `Strict-Transport-Security` belongs to whatever terminates TLS (the ingress), not to this
/// cleartext listener.
pub async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// Refuses a request whose headers exceed [`MAX_HEADER_BYTES`] with a 431 in the contract's shape.
pub async fn header_limit(request: Request, next: Next) -> Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > MAX_HEADER_BYTES {
        return reason_response(
            Reason::HeadersTooLarge,
            format!("the request's headers come to more than {MAX_HEADER_BYTES} bytes"),
            &[],
        );
    }
    next.run(request).await
}

/// Refuses a request whose declared `Content-Length` exceeds the body limit with a 413 at once,
/// before reading any of the body (otherwise the server would wait for a body it will refuse until
/// the request timed out). A body without a declared length is still cut off at the limit as it is
/// read.
pub async fn declared_body_limit(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return reason_response(
            Reason::BodyTooLarge,
            format!("the request body is larger than {limit} bytes"),
            &[],
        );
    }
    next.run(request).await
}

/// The CORS policy: the configured origins, `methods` and `OPTIONS`, the headers the API reads, and
/// the request id and `Retry-After` readable by the page.
fn cors(origins: &[String], mut methods: Vec<Method>) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if !methods.contains(&Method::OPTIONS) {
        methods.push(Method::OPTIONS);
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(methods)
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
