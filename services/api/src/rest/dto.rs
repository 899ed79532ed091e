//! The JSON shapes of the REST API (snake_case fields, 64-bit integers as JSON numbers), converted from
//! the service layer's types. The same shapes are served by the gateway.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use streambank_service as service;
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub email: String,
    pub full_name: String,
    /// `customer` or `banker`.
    pub role: String,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
}

impl From<service::User> for User {
    fn from(u: service::User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: u.email,
            full_name: u.full_name,
            role: u.role.to_string(),
            email_verified: u.email_verified_at.is_some(),
            created_at: u.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Account {
    pub id: i64,
    pub owner_id: i64,
    /// ISO 4217: `USD`, `EUR` or `CAD`.
    pub currency: String,
    /// Minor units (cents).
    pub balance: i64,
    pub created_at: DateTime<Utc>,
}

impl From<service::Account> for Account {
    fn from(a: service::Account) -> Self {
        Self {
            id: a.id,
            owner_id: a.owner_id,
            currency: a.currency,
            balance: a.balance,
            created_at: a.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Entry {
    pub id: i64,
    pub account_id: i64,
    /// Signed minor units: negative leaves the account, positive arrives.
    pub amount: i64,
    /// The transfer this entry belongs to; absent for deposits.
    pub transfer_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

impl From<service::Entry> for Entry {
    fn from(e: service::Entry) -> Self {
        Self {
            id: e.id,
            account_id: e.account_id,
            amount: e.amount,
            transfer_id: e.transfer_id,
            created_at: e.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Transfer {
    pub id: i64,
    pub from_account_id: i64,
    pub to_account_id: i64,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

impl From<service::Transfer> for Transfer {
    fn from(t: service::Transfer) -> Self {
        Self {
            id: t.id,
            from_account_id: t.from_account_id,
            to_account_id: t.to_account_id,
            amount: t.amount,
            currency: t.currency,
            created_at: t.created_at,
        }
    }
}

/// A completed transfer, with the caller's own (source) account as it is after it and its entry. The
/// destination account is not the caller's: it is named in `transfer`, and nothing more is shown.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferResult {
    pub transfer: Transfer,
    pub from_account: Account,
    pub from_entry: Entry,
}

impl From<service::TransferResult> for TransferResult {
    fn from(r: service::TransferResult) -> Self {
        Self {
            transfer: r.transfer.into(),
            from_account: r.from_account.into(),
            from_entry: r.from_entry.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Deposit {
    pub account: Account,
    pub entry: Entry,
}

impl From<service::Deposit> for Deposit {
    fn from(d: service::Deposit) -> Self {
        Self {
            account: d.account.into(),
            entry: d.entry.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Notification {
    pub id: i64,
    pub event_id: Uuid,
    pub kind: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

impl From<service::Notification> for Notification {
    fn from(n: service::Notification) -> Self {
        Self {
            id: n.id,
            event_id: n.event_id,
            kind: n.kind,
            body: n.body,
            created_at: n.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
    /// Pass as `page_token` for the next page; absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    pub entries: Vec<Entry>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferList {
    pub transfers: Vec<Transfer>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<Notification>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Login {
    pub session_id: Uuid,
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    pub user: User,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Refreshed {
    pub session_id: Uuid,
    pub access_token: String,
    pub access_token_expires_at: DateTime<Utc>,
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmailVerified {
    pub verified: bool,
    pub user_id: i64,
}

// Requests. Fields default when missing so that validation can report every missing field at once.

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub full_name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
}

/// Log in with `username` or `email`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub username: Option<String>,
    pub email: Option<String>,
    #[serde(default)]
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[serde(default)]
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAccountRequest {
    #[serde(default)]
    pub currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DepositRequest {
    /// Minor units (cents), positive.
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub currency: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct TransferRequest {
    #[serde(default)]
    pub from_account_id: i64,
    #[serde(default)]
    pub to_account_id: i64,
    /// Minor units (cents), positive.
    #[serde(default)]
    pub amount: i64,
    #[serde(default)]
    pub currency: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 100; default 20.
    pub page_size: Option<i64>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TransferListQuery {
    /// The account whose transfers to list (one of the caller's).
    pub account_id: Option<i64>,
    pub page_size: Option<i64>,
    pub page_token: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VerifyEmailQuery {
    pub id: Option<i64>,
    pub code: Option<String>,
}
