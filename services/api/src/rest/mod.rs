//! The REST listener: one router per resource, merged here with the cross-cutting layers.
//!
//! Handlers decode, call the service layer, and encode; every rule lives in `streambank-service`.
//! Cross-cutting behaviour is layered once: the HTTP layers REST shares with the gateway
//! ([`crate::contract::http`]: request ids, the span and one log line per request, header and body size
//! limits, a request timeout, CORS), and here, per-client-IP rate limits on login and registration (one budget per address, shared with
//! the gRPC server and so with the gateway: [`crate::state::AuthRateLimiter`]).

pub mod accounts;
pub mod dto;
pub mod error;
pub mod extract;
pub mod health;
pub mod notifications;
pub mod openapi;
pub mod sessions;
pub mod transfers;
pub mod users;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::response::IntoResponse;
use streambank_domain::PageRequest;

use self::error::ApiError;
use crate::config::Config;
use crate::contract::http::{HttpOptions, Listener};
use crate::contract::{self, client, landing};
use crate::state::AppState;

/// The whole REST API, with the landing page at `/`.
pub fn router(state: AppState, config: &Config, landing: landing::Landing) -> Router {
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
        .merge(landing::router(landing, Listener::Rest))
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            contract::metrics::track,
        ))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .with_state(state);

    contract::http::layers(
        api,
        Listener::Rest,
        &HttpOptions::from(config),
        vec![Method::GET, Method::POST, Method::DELETE],
    )
}

/// Parses `page_size` and `page_token`; bad values are validation errors naming the field.
pub fn page(size: Option<i64>, token: Option<&str>) -> Result<PageRequest, ApiError> {
    Ok(streambank_service::page_request(size, token)?)
}

/// Counts a login or registration against the client's budget, which REST, gRPC and the gateway
/// share ([`crate::state::AuthRateLimiter`]); over it, `429 RATE_LIMITED` with `Retry-After`. The
/// client is the address sessions record ([`client::client_ip`]).
async fn rate_limit(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let ip = client::client_ip(
        client::peer_ip(request.extensions()),
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
