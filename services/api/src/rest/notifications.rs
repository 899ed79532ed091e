//! `/v1/notifications`: what the caller has been told.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use super::dto::{NotificationList, PageQuery};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiQuery, AuthUser};
use super::page;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/notifications", get(list))
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = NotificationList), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<NotificationList>, ApiError> {
    let page = state
        .bank
        .list_notifications(who.caller, page(q.page_size, q.page_token.as_deref())?)
        .await?;
    Ok(Json(NotificationList {
        notifications: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }))
}
