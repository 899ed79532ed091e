//! `/v1/sessions`: log in, refresh, log out.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{delete, post};
use axum::{Json, Router};
use streambank_service::{ClientMeta, Credentials};

use super::dto::{Login, LoginRequest, RefreshRequest, Refreshed};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, AuthUser};
use crate::contract::client::{client_ip, peer_ip};
use crate::state::AppState;

/// Routes that are rate limited per client IP (see `rest::router`).
pub fn limited_router() -> Router<AppState> {
    Router::new().route("/v1/sessions", post(login))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/sessions/refresh", post(refresh))
        .route("/v1/sessions/current", delete(logout))
}

/// Log in with a username or an email address.
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions", request_body = LoginRequest,
    responses((status = 201, body = Login), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    extensions: axum::http::Extensions,
    headers: HeaderMap,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<(StatusCode, Json<Login>), ApiError> {
    let meta = ClientMeta {
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        client_ip: client_ip(peer_ip(&extensions), &headers, &state.trusted_proxies),
    };
    let result = state
        .sessions
        .login(
            &state.bank,
            Credentials {
                username: body.username.as_deref(),
                email: body.email.as_deref(),
                password: &body.password,
            },
            meta,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(Login {
            session_id: result.session_id,
            access_token: result.access.token,
            access_token_expires_at: result.access.expires_at,
            refresh_token: result.refresh.token,
            refresh_token_expires_at: result.refresh.expires_at,
            user: result.user.into(),
        }),
    ))
}

/// Exchange a refresh token for a new access token and a rotated refresh token.
#[utoipa::path(post, path = "/v1/sessions/refresh", tag = "sessions", request_body = RefreshRequest,
    responses((status = 200, body = Refreshed), (status = 401, body = ErrorBody)))]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<Refreshed>, ApiError> {
    let refreshed = state.sessions.refresh(&body.refresh_token).await?;
    Ok(Json(Refreshed {
        session_id: refreshed.session_id,
        access_token: refreshed.access.token,
        access_token_expires_at: refreshed.access.expires_at,
        refresh_token: refreshed.refresh.token,
        refresh_token_expires_at: refreshed.refresh.expires_at,
    }))
}

/// Log out: the session is revoked and every token of it stops working at once.
#[utoipa::path(delete, path = "/v1/sessions/current", tag = "sessions", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<StatusCode, ApiError> {
    state.sessions.logout(who).await?;
    Ok(StatusCode::NO_CONTENT)
}
