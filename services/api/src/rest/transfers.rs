//! `/v1/transfers`: move money (idempotently with `Idempotency-Key`), read and list transfers.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use streambank_service::{Bank, TransferRequest as Request};

use super::dto::{Transfer, TransferList, TransferListQuery, TransferRequest, TransferResult};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, AuthUser, PathId};
use super::page;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/transfers", post(create).get(list))
        .route("/v1/transfers/{id}", get(get_one))
}

/// Move money from one of the caller's accounts to any account in the same currency. With an
/// `Idempotency-Key` header, a retry of the same request returns the first result and moves no money.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", security(("bearer" = [])), request_body = TransferRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe; kept at least 24 hours")),
    responses((status = 201, body = TransferResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    headers: HeaderMap,
    ApiJson(body): ApiJson<TransferRequest>,
) -> Result<(StatusCode, Json<TransferResult>), ApiError> {
    let request = Request {
        from_account_id: body.from_account_id,
        to_account_id: body.to_account_id,
        amount: body.amount,
        currency: &body.currency,
    };
    let key = Bank::idempotency_key(headers.get("idempotency-key").map(|key| key.as_bytes()))?;
    let result = state.bank.transfer(who.caller, key, request).await?;
    Ok((StatusCode::CREATED, Json(result.into())))
}

/// A transfer the caller is a party to.
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Transfer), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    PathId(id): PathId,
) -> Result<Json<Transfer>, ApiError> {
    Ok(Json(state.bank.get_transfer(who.caller, id).await?.into()))
}

/// The transfers into and out of one of the caller's accounts, newest first.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers", security(("bearer" = [])), params(TransferListQuery),
    responses((status = 200, body = TransferList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    ApiQuery(q): ApiQuery<TransferListQuery>,
) -> Result<Json<TransferList>, ApiError> {
    let page = state
        .bank
        .list_transfers(
            who.caller,
            q.account_id,
            page(q.page_size, q.page_token.as_deref())?,
        )
        .await?;
    Ok(Json(TransferList {
        transfers: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }))
}
