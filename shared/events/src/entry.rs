//! A stream entry: the fields the relay writes with `XADD` and the workers read back (architecture §5),
//! plain strings so that `redis-cli XRANGE` reads naturally.

use std::collections::HashMap;

/// One event as it travels on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub event_id: String,
    pub event_type: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    /// RFC 3339.
    pub occurred_at: String,
    /// W3C trace context of the request that caused the event; empty when it was not traced.
    pub traceparent: String,
    /// JSON.
    pub payload: String,
}

impl StreamEntry {
    pub const FIELDS: [&'static str; 7] = [
        "event_id",
        "event_type",
        "aggregate_type",
        "aggregate_id",
        "occurred_at",
        "traceparent",
        "payload",
    ];

    /// The field/value pairs, in a fixed order, for `XADD`.
    pub fn to_fields(&self) -> [(&'static str, &str); 7] {
        [
            ("event_id", &self.event_id),
            ("event_type", &self.event_type),
            ("aggregate_type", &self.aggregate_type),
            ("aggregate_id", &self.aggregate_id),
            ("occurred_at", &self.occurred_at),
            ("traceparent", &self.traceparent),
            ("payload", &self.payload),
        ]
    }

    /// Reads an entry back; `None` names the first missing field.
    pub fn from_fields(mut fields: HashMap<String, String>) -> Result<Self, &'static str> {
        let mut take = |name: &'static str| fields.remove(name).ok_or(name);
        Ok(Self {
            event_id: take("event_id")?,
            event_type: take("event_type")?,
            aggregate_type: take("aggregate_type")?,
            aggregate_id: take("aggregate_id")?,
            occurred_at: take("occurred_at")?,
            traceparent: take("traceparent").unwrap_or_default(),
            payload: take("payload")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let entry = StreamEntry {
            event_id: "e".into(),
            event_type: "transfer.completed".into(),
            aggregate_type: "transfer".into(),
            aggregate_id: "7".into(),
            occurred_at: "2026-11-25T00:00:00Z".into(),
            traceparent: String::new(),
            payload: "{}".into(),
        };
        let fields = entry
            .to_fields()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(StreamEntry::from_fields(fields), Ok(entry));
        assert_eq!(StreamEntry::from_fields(HashMap::new()), Err("event_id"));
    }
}
