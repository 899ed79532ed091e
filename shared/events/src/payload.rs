//! The JSON payload of each event type (architecture §5). Secrets never appear here.
//!
//! The store builds some payloads in SQL (it learns ids such as `transfer_id` only inside the statement
//! that writes them); the store's tests read those rows back through these types, with unknown fields
//! denied, so the SQL and the structs cannot drift apart.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserRegistered {
    pub user_id: i64,
    pub username: String,
    pub email: String,
    pub full_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEmailVerified {
    pub user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountOpened {
    pub account_id: i64,
    pub owner_id: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoneyDeposited {
    pub account_id: i64,
    pub amount: i64,
    pub currency: String,
    pub by_user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferCompleted {
    pub transfer_id: i64,
    pub from_account_id: i64,
    pub to_account_id: i64,
    pub from_owner_id: i64,
    pub to_owner_id: i64,
    pub amount: i64,
    pub currency: String,
}
