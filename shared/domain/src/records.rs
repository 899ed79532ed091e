//! What the bank has written, as read back: accounts, ledger entries, transfers, deposits and
//! notifications. The store returns these and the service hands them to the transports; they carry
//! no rule of their own, since every rule ran before they were written.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: i64,
    pub owner_id: i64,
    pub currency: String,
    pub balance: i64,
    pub created_at: DateTime<Utc>,
}

/// One line of an account's statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: i64,
    pub account_id: i64,
    /// Signed minor units: negative leaves the account, positive arrives.
    pub amount: i64,
    pub transfer_id: Option<i64>,
    pub deposited_by: Option<i64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: i64,
    pub from_account_id: i64,
    pub to_account_id: i64,
    pub amount: i64,
    pub currency: String,
    pub created_at: DateTime<Utc>,
}

/// What a completed deposit wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deposit {
    pub account: Account,
    pub entry: Entry,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: i64,
    pub user_id: i64,
    pub event_id: Uuid,
    pub kind: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}
