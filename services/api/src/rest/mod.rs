//! The REST listener: one router per resource, merged here with the cross-cutting layers.
//!
//! Handlers decode, call the service layer, and encode; every rule lives in `streambank-service`.
//! Cross-cutting behaviour is layered once, here: request ids (`x-request-id`, generated when absent,
//! echoed, and recorded on the request's span), tracing, header and body size limits, a request timeout,
//! CORS, and per-client-IP rate limits on login and registration.

pub mod accounts;
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

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use axum::response::IntoResponse;
use governor::clock::QuantaInstant;
use governor::middleware::NoOpMiddleware;
use streambank_domain::PageRequest;
use tower::ServiceBuilder;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
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
        .route_layer(rate_limit(
            config.auth_rate_limit_per_minute,
            state.trusted_proxies.clone(),
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
            .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
                let request_id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
                let span = tracing::info_span!("http request", method = %request.method(), uri = %request.uri(), request_id);
                // A caller that is itself traced passes its W3C traceparent; the request continues it.
                if let Some(traceparent) = request.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
                    streambank_telemetry::continue_trace(&span, traceparent);
                }
                span
            }))
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(header_limit))
            .layer(axum::middleware::from_fn_with_state(
                config.body_limit_bytes,
                declared_body_limit,
            ))
            .layer(cors(&config.cors_allowed_origins))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async { ApiError::Timeout }))
            .timeout(config.request_timeout),
    )
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

/// The rate-limit key: the client IP, computed exactly as sessions record it.
#[derive(Debug, Clone)]
struct ClientIpKey {
    trusted_proxies: Arc<[IpAddr]>,
}

impl KeyExtractor for ClientIpKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, tower_governor::GovernorError> {
        extract::client_ip(
            extract::peer_ip(req.extensions()),
            req.headers(),
            &self.trusted_proxies,
        )
        .ok_or(tower_governor::GovernorError::UnableToExtractKey)
    }
}

/// `per_minute` requests per client IP per minute, with bursts of up to the same number.
fn rate_limit(
    per_minute: u32,
    trusted_proxies: Vec<IpAddr>,
) -> GovernorLayer<ClientIpKey, NoOpMiddleware<QuantaInstant>, axum::body::Body> {
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientIpKey {
            trusted_proxies: trusted_proxies.into(),
        })
        .period(Duration::from_nanos(
            60_000_000_000 / u64::from(per_minute.max(1)),
        ))
        .burst_size(per_minute.max(1))
        .finish()
        .expect("a positive period and burst make a valid rate limit (checked at start-up)");
    GovernorLayer::new(config).error_handler(|e| match e {
        tower_governor::GovernorError::TooManyRequests { wait_time, .. } => ApiError::RateLimited {
            retry_after_secs: wait_time.max(1),
        }
        .into_response(),
        _ => ApiError::Service(streambank_service::Error::Internal(anyhow::anyhow!(
            "rate limiter: {e}"
        )))
        .into_response(),
    })
}
