//! Outbox rows. Each statement that changes business state inserts its event in the same statement, from
//! an [`EventMeta`] made by the caller.

use uuid::Uuid;

/// The caller-chosen parts of an outbox row: the event id and the trace context to carry along.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// The event id: a UUID v7, so ids sort by creation time.
    pub id: Uuid,
    /// The W3C `traceparent` of the request that caused the event, when it was traced.
    pub traceparent: Option<String>,
}

impl EventMeta {
    pub fn new(traceparent: Option<String>) -> Self {
        Self {
            id: Uuid::now_v7(),
            traceparent,
        }
    }
}
