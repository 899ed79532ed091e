//! `/v1/users`: registration, the caller, and the email verification link.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use streambank_service::{EmailVerification, RegisterUser};

use super::dto::{EmailVerified, RegisterRequest, User, VerifyEmailQuery};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, AuthUser};
use crate::state::AppState;

/// Routes that are rate limited per client IP (see `rest::router`).
pub fn limited_router() -> Router<AppState> {
    Router::new().route("/v1/users", post(register))
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me", get(me))
        .route("/v1/users/verify-email", get(verify_email))
}

/// Register a customer. A verification email follows; logging in needs the verified address.
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = RegisterRequest,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let input = RegisterUser {
        username: body.username,
        email: body.email,
        full_name: body.full_name,
        password: body.password,
    };
    let user = state.bank.register_user(input).await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// The caller.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
) -> Result<Json<User>, ApiError> {
    Ok(Json(state.bank.get_user(who.caller.user_id).await?.into()))
}

/// The link in the verification email. A browser (`Accept` naming `text/html`) gets a page; other
/// clients get JSON. Opening the link again after it worked answers 200 as well: the address is verified.
#[utoipa::path(get, path = "/v1/users/verify-email", tag = "users", params(VerifyEmailQuery),
    responses((status = 200, body = EmailVerified), (status = 400, body = ErrorBody)))]
pub async fn verify_email(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<VerifyEmailQuery>,
) -> Response {
    let wants_html = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|accept| accept.contains("text/html"));
    let outcome = match (query.id, query.code.as_deref()) {
        (Some(id), Some(code)) => state
            .bank
            .verify_email_link(id, code)
            .await
            .map_err(ApiError::from),
        _ => Err(ApiError::Service(
            streambank_service::Error::VerificationInvalid,
        )),
    };
    match (outcome, wants_html) {
        (Ok(outcome), false) => Json(EmailVerified {
            verified: true,
            user_id: outcome.user_id(),
        })
        .into_response(),
        (Ok(EmailVerification::Verified { .. }), true) => page(
            StatusCode::OK,
            "Email verified",
            "Your email address is verified. You can log in now.",
        ),
        (Ok(EmailVerification::AlreadyVerified { .. }), true) => page(
            StatusCode::OK,
            "Already verified",
            "This link has already verified your email address; there is nothing more to do. \
             You can log in.",
        ),
        (Err(e), false) => e.into_response(),
        (Err(e), true) => {
            let status = e.into_response().status();
            page(
                status,
                "Link not valid",
                "This verification link is wrong or has expired: a link works for 24 hours. \
                 If you copied it by hand, check that the whole link came along.",
            )
        }
    }
}

fn page(status: StatusCode, title: &str, text: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} - StreamBank</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body style=\"font-family: system-ui, sans-serif; max-width: 36rem; margin: 4rem auto; padding: 0 1rem\">\
         <h1>{title}</h1><p>{text}</p></body></html>"
    );
    (status, Html(html)).into_response()
}
