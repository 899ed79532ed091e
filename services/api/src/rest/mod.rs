//! The REST listener: one router per resource, merged here with the cross-cutting layers.
//!
//! Handlers decode, call the service layer, and encode; every rule lives in `streambank-service`.
//! Cross-cutting behaviour is layered once, here: request ids (`x-request-id`, generated when absent,
//! echoed, and recorded on the request's span), tracing, header and body size limits, a request timeout,
//! CORS, and per-client-IP rate limits on login and registration (one budget per address, shared with
//! the gRPC server and so with the gateway: [`crate::state::AuthRateLimiter`]).

pub mod accounts;
pub mod constraints;
pub mod dto;
pub mod error;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod notifications;
pub mod openapi;
pub mod sessions;
pub mod transfers;
pub mod users;

use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::response::IntoResponse;
use streambank_domain::PageRequest;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use self::error::ApiError;
use crate::config::Config;
use crate::state::AppState;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole REST API.
pub fn router(state: AppState, config: &Config) -> Router {
    let limited = users::limited_router()
        .merge(sessions::limited_router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            rate_limit,
        ));

    let api = Router::new()
        .merge(limited)
        .merge(users::router())
        .merge(sessions::router())
        .merge(accounts::router())
        .merge(transfers::router())
        .merge(notifications::router())
        .merge(health::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .with_state(state);

    api.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(axum::middleware::from_fn(security_headers))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<_>| {
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        // The route template is recorded once routing has matched it (`metrics::track`); the
                        // URI is not, since its query can hold a verification code or a token.
                        let span = tracing::info_span!(
                            "http request",
                            method = metrics::method_label(request.method()),
                            route = tracing::field::Empty,
                            request_id
                        );
                        // A caller that is itself traced passes its W3C traceparent; the request continues it.
                        if let Some(traceparent) = request
                            .headers()
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                        {
                            streambank_telemetry::continue_trace(&span, traceparent);
                        }
                        span
                    })
                    .on_response(log_response),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(header_limit))
            .layer(axum::middleware::from_fn_with_state(
                config.body_limit_bytes,
                declared_body_limit,
            ))
            .layer(cors(&config.cors_allowed_origins))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::Timeout
            }))
            .timeout(config.request_timeout),
    )
}

/// How a finished request is logged, on REST and the gateway alike (the gRPC server does the same
/// for calls): a refusal (4xx, the caller's doing) at INFO, so that it is seen but pages no one; an
/// answer at DEBUG. A 5xx is logged at ERROR by the trace layer's `on_failure`: only what an operator
/// must look at is an error (issue 19).
pub fn log_response<B>(
    response: &axum::http::Response<B>,
    latency: Duration,
    _span: &tracing::Span,
) {
    let status = response.status();
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    if status.is_client_error() {
        tracing::info!(status = status.as_u16(), latency_ms, "request refused");
    } else if !status.is_server_error() {
        tracing::debug!(status = status.as_u16(), latency_ms, "request answered");
    }
}

/// Headers every answer carries, on REST and the gateway (unless a handler set its own): an API that
/// answers JSON, some of it tokens and balances, is cached nowhere, sniffed as nothing else, framed
/// by no page, and sends no `Referer` onwards (the verification page's URL holds its code).
/// `Strict-Transport-Security` belongs to whatever terminates TLS (the ingress), not to this
/// cleartext listener.
pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
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

/// The most a request's headers may come to, counted as HTTP/2 counts a header list (RFC 7541 §4.1:
/// name, value and 32 bytes a field). hyper's HTTP/1.1 reader would take some 400 KiB; a bound this
/// size answers in the contract's shape instead, and keeps what the gateway forwards well inside the
/// gRPC server's [`crate::grpc::MAX_HEADER_LIST_BYTES`], so that REST and the gateway answer alike.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses a request whose headers exceed [`MAX_HEADER_BYTES`] with a 431 in the contract's shape.
/// (REST and the gateway both run it.)
pub async fn header_limit(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let size: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum();
    if size > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge {
            limit: MAX_HEADER_BYTES,
        }
        .into_response();
    }
    next.run(request).await
}

/// Refuses a request whose declared `Content-Length` exceeds the body limit with a 413 at once,
/// before reading any of the body (otherwise the server would wait for a body it will refuse until
/// the request timed out). A body without a declared length is still cut off at the limit as it is
/// read. (REST and the gateway both run it.)
pub async fn declared_body_limit(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return ApiError::BodyTooLarge { limit }.into_response();
    }
    next.run(request).await
}

/// Parses `page_size` and `page_token`; bad values are validation errors naming the field.
pub fn page(size: Option<i64>, token: Option<&str>) -> Result<PageRequest, ApiError> {
    Ok(streambank_service::page_request(size, token)?)
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}

/// Counts a login or registration against the client's budget, which REST, gRPC and the gateway
/// share ([`crate::state::AuthRateLimiter`]); over it, `429 RATE_LIMITED` with `Retry-After`. The
/// client is the address sessions record ([`extract::client_ip`]).
async fn rate_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ip = extract::client_ip(
        extract::peer_ip(request.extensions()),
        request.headers(),
        &state.trusted_proxies,
    );
    if let Some(ip) = ip
        && let Err(retry_after_secs) = state.auth_limiter.check(ip)
    {
        return ApiError::RateLimited { retry_after_secs }.into_response();
    }
    next.run(request).await
}
