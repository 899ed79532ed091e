//! `/v1/accounts`: open, read, list; statements; deposits.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

use super::dto::{
    Account, AccountList, Deposit, DepositRequest, EntryList, OpenAccountRequest, PageQuery,
};
use super::error::{ApiError, ErrorBody};
use super::extract::{ApiJson, ApiQuery, AuthUser, PathId};
use super::page;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/accounts", post(open).get(list))
        .route("/v1/accounts/{id}", get(get_one))
        .route("/v1/accounts/{id}/entries", get(entries))
        .route("/v1/accounts/{id}/deposits", post(deposit))
}

/// Open an account in a currency (one per currency per customer).
#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])), request_body = OpenAccountRequest,
    responses((status = 201, body = Account), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn open(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    ApiJson(body): ApiJson<OpenAccountRequest>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let account = state.bank.open_account(who.caller, &body.currency).await?;
    Ok((StatusCode::CREATED, Json(account.into())))
}

/// The caller's accounts.
#[utoipa::path(get, path = "/v1/accounts", tag = "accounts", security(("bearer" = [])), params(PageQuery),
    responses((status = 200, body = AccountList), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AccountList>, ApiError> {
    let page = state
        .bank
        .list_accounts(who.caller, page(q.page_size, q.page_token.as_deref())?)
        .await?;
    Ok(Json(AccountList {
        accounts: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// One account: the caller's own (a banker sees every account).
#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts", security(("bearer" = [])), params(("id" = i64, Path)),
    responses((status = 200, body = Account), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    PathId(id): PathId,
) -> Result<Json<Account>, ApiError> {
    let account = state.bank.get_account(who.caller, id).await?;
    Ok(Json(account.into()))
}

/// An account's statement, newest first.
#[utoipa::path(get, path = "/v1/accounts/{id}/entries", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path), PageQuery),
    responses((status = 200, body = EntryList), (status = 404, body = ErrorBody)))]
pub async fn entries(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    PathId(id): PathId,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<EntryList>, ApiError> {
    let page = state
        .bank
        .list_entries(who.caller, id, page(q.page_size, q.page_token.as_deref())?)
        .await?;
    Ok(Json(EntryList {
        entries: page.items.into_iter().map(Into::into).collect(),
        next_page_token: page.next_page_token,
    }))
}

/// Deposit money into an account (bankers only).
#[utoipa::path(post, path = "/v1/accounts/{id}/deposits", tag = "accounts", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = DepositRequest,
    responses((status = 201, body = Deposit), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn deposit(
    State(state): State<AppState>,
    AuthUser(who): AuthUser,
    PathId(id): PathId,
    ApiJson(body): ApiJson<DepositRequest>,
) -> Result<(StatusCode, Json<Deposit>), ApiError> {
    let deposit = state
        .bank
        .deposit(who.caller, id, body.amount, &body.currency)
        .await?;
    Ok((StatusCode::CREATED, Json(deposit.into())))
}
