//! What a failed entry means: a dependency outage to ride out, a race with another worker to wait out,
//! or something wrong with the entry itself.
//!
//! The kind decides what happens next ([`crate::consumer`]):
//!
//! | kind | retried | dead-lettered |
//! |---|---|---|
//! | [`Failure::Outage`] | when the dependency answers again; the group slows its reads meanwhile | only past `WORKER_DEAD_LETTER_AFTER` (24 h) |
//! | [`Failure::Contended`] | after a short backoff | only past the same age |
//! | [`Failure::Permanent`] | never | at once |
//! | [`Failure::Unknown`] | with exponential backoff | after `WORKER_MAX_DELIVERIES` deliveries |

/// The kinds of failure, from the error a handler returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// Postgres, Redis or the SMTP server is unreachable, timed out or answered "try later" (SMTP 4xx).
    Outage,
    /// Another worker holds this email's claim: it is sending it now.
    Contended,
    /// The entry cannot succeed: it does not parse, or the SMTP server refused the address (5xx).
    Permanent,
    /// Anything else: retried a few times, then dead-lettered.
    Unknown,
}

/// The error a handler returns when another worker holds the claim of an email it was about to send.
#[derive(Debug, thiserror::Error)]
#[error("another worker ({claimer}) is sending this email now")]
pub struct Contended {
    pub claimer: String,
}

/// The error of an entry that can never be handled (bad payload, not an event).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Poison(pub String);

impl Failure {
    /// Reads the kind off an error's chain of causes; the first cause that tells wins.
    pub fn of(error: &anyhow::Error) -> Self {
        for cause in error.chain() {
            if cause.is::<Contended>() {
                return Failure::Contended;
            }
            if cause.is::<Poison>()
                || cause.is::<serde_json::Error>()
                || cause.is::<uuid::Error>()
                || cause.is::<lettre::address::AddressError>()
            {
                return Failure::Permanent;
            }
            if let Some(smtp) = cause.downcast_ref::<lettre::transport::smtp::Error>() {
                // A 5xx reply refuses this message for good; everything else (4xx, connection, timeout,
                // TLS, a server that hung up) is the server's state, not the message's.
                return if smtp.is_permanent() {
                    Failure::Permanent
                } else {
                    Failure::Outage
                };
            }
            if let Some(db) = cause.downcast_ref::<sqlx::Error>()
                && (streambank_store::is_connection_error(db) || streambank_store::is_retryable(db))
            {
                return Failure::Outage;
            }
            if let Some(redis) = cause.downcast_ref::<redis::RedisError>()
                && (redis.is_io_error()
                    || redis.is_timeout()
                    || redis.is_connection_dropped()
                    || redis.is_connection_refusal())
            {
                return Failure::Outage;
            }
            if cause.is::<std::io::Error>() || cause.is::<tokio::time::error::Elapsed>() {
                return Failure::Outage;
            }
        }
        Failure::Unknown
    }

    pub fn name(self) -> &'static str {
        match self {
            Failure::Outage => "outage",
            Failure::Contended => "contended",
            Failure::Permanent => "permanent",
            Failure::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_read_off_the_chain_of_causes() {
        let refused =
            anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
                .context("cannot reach the SMTP server");
        assert_eq!(Failure::of(&refused), Failure::Outage);
        let pool =
            anyhow::Error::new(sqlx::Error::PoolTimedOut).context("database statement failed");
        assert_eq!(Failure::of(&pool), Failure::Outage);
        let parse = anyhow::Error::new(
            serde_json::from_str::<serde_json::Value>("{").expect_err("broken JSON"),
        );
        assert_eq!(Failure::of(&parse), Failure::Permanent);
        let claimed = anyhow::Error::new(Contended {
            claimer: "w2".to_owned(),
        });
        assert_eq!(Failure::of(&claimed), Failure::Contended);
        assert_eq!(
            Failure::of(&anyhow::anyhow!("the notification template is broken")),
            Failure::Unknown
        );
    }
}
