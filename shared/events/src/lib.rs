//! StreamBank's events and the streams they travel on (architecture §5).
//!
//! Every business change writes one outbox row in the same transaction as the change; the relay copies it
//! to a Redis stream; workers react to it. This crate is the single place that names event types,
//! aggregates, payload fields and stream keys, so that the writer (the store), the relay and the workers
//! cannot drift apart. No other crate writes a stream key or an event type as a string literal.
//!
//! # Layout
//!
//! - [`EventType`]: each kind of event, its wire name, aggregate and stream.
//! - [`Stream`] and [`stream_key`]: where events go in Redis (`{prefix}:events:{name}`).
//! - [`entry`]: [`StreamEntry`], the fields of a stream entry, written by the relay, read by workers.
//! - [`payload`]: the JSON payload of each event type.

pub mod entry;
pub mod payload;

pub use entry::StreamEntry;

use std::fmt;

/// The kinds of events StreamBank emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    UserRegistered,
    UserEmailVerified,
    AccountOpened,
    MoneyDeposited,
    TransferCompleted,
}

impl EventType {
    pub const ALL: [EventType; 5] = [
        EventType::UserRegistered,
        EventType::UserEmailVerified,
        EventType::AccountOpened,
        EventType::MoneyDeposited,
        EventType::TransferCompleted,
    ];

    /// The `event_type` written to the outbox and the stream entry.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::UserRegistered => "user.registered",
            EventType::UserEmailVerified => "user.email_verified",
            EventType::AccountOpened => "account.opened",
            EventType::MoneyDeposited => "money.deposited",
            EventType::TransferCompleted => "transfer.completed",
        }
    }

    /// Parses an `event_type` read back from the outbox or a stream.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == raw)
    }

    /// The aggregate the event belongs to; events of one aggregate are published in order.
    pub fn aggregate(self) -> Aggregate {
        match self {
            EventType::UserRegistered | EventType::UserEmailVerified => Aggregate::User,
            EventType::AccountOpened | EventType::MoneyDeposited => Aggregate::Account,
            EventType::TransferCompleted => Aggregate::Transfer,
        }
    }

    /// The stream the event is published on.
    pub fn stream(self) -> Stream {
        match self.aggregate() {
            Aggregate::User => Stream::Users,
            Aggregate::Account => Stream::Accounts,
            Aggregate::Transfer => Stream::Transfers,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event is about (`aggregate_type` in the outbox and the stream entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aggregate {
    User,
    Account,
    Transfer,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        match self {
            Aggregate::User => "user",
            Aggregate::Account => "account",
            Aggregate::Transfer => "transfer",
        }
    }
}

/// The event streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stream {
    Users,
    Accounts,
    Transfers,
}

impl Stream {
    pub const ALL: [Stream; 3] = [Stream::Users, Stream::Accounts, Stream::Transfers];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Users => "users",
            Stream::Accounts => "accounts",
            Stream::Transfers => "transfers",
        }
    }
}

/// The Redis key of a stream: `{prefix}:events:{name}`, e.g. `bank:events:transfers`.
pub fn stream_key(prefix: &str, stream: Stream) -> String {
    format!("{prefix}:events:{}", stream.name())
}

/// The Redis key of the dead-letter stream: `{prefix}:dlq`.
pub fn dead_letter_key(prefix: &str) -> String {
    format!("{prefix}:dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_contract() {
        assert_eq!(
            stream_key("bank", Stream::Transfers),
            "bank:events:transfers"
        );
        assert_eq!(dead_letter_key("bank"), "bank:dlq");
        for event in EventType::ALL {
            assert_eq!(EventType::parse(event.as_str()), Some(event));
        }
        assert_eq!(EventType::TransferCompleted.stream(), Stream::Transfers);
        assert_eq!(EventType::MoneyDeposited.stream(), Stream::Accounts);
        assert_eq!(EventType::UserEmailVerified.aggregate().as_str(), "user");
        assert_eq!(EventType::parse("transfer.failed"), None);
    }
}
