//! The service layer's values as protobuf messages (the same fields as the REST shapes in
//! `rest::dto`), and the small conversions every method needs.

use chrono::{DateTime, Utc};
use streambank_proto::v1 as pb;
use streambank_service as service;

pub fn timestamp(t: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

pub fn user(u: service::User) -> pb::User {
    pb::User {
        id: u.id,
        username: u.username,
        email: u.email,
        full_name: u.full_name,
        role: u.role.to_string(),
        email_verified: u.email_verified_at.is_some(),
        created_at: timestamp(u.created_at),
    }
}

pub fn account(a: service::Account) -> pb::Account {
    pb::Account {
        id: a.id,
        owner_id: a.owner_id,
        currency: a.currency,
        balance: a.balance,
        created_at: timestamp(a.created_at),
    }
}

pub fn entry(e: service::Entry) -> pb::Entry {
    pb::Entry {
        id: e.id,
        account_id: e.account_id,
        amount: e.amount,
        transfer_id: e.transfer_id,
        created_at: timestamp(e.created_at),
    }
}

pub fn transfer(t: service::Transfer) -> pb::Transfer {
    pb::Transfer {
        id: t.id,
        from_account_id: t.from_account_id,
        to_account_id: t.to_account_id,
        amount: t.amount,
        currency: t.currency,
        created_at: timestamp(t.created_at),
    }
}

pub fn transfer_result(r: service::TransferResult) -> pb::TransferResult {
    pb::TransferResult {
        transfer: Some(transfer(r.transfer)),
        from_account: Some(account(r.from_account)),
        from_entry: Some(entry(r.from_entry)),
    }
}

pub fn notification(n: service::Notification) -> pb::Notification {
    pb::Notification {
        id: n.id,
        event_id: n.event_id.to_string(),
        kind: n.kind,
        body: n.body,
        created_at: timestamp(n.created_at),
    }
}
