//! `streambank-worker`: consumer groups on StreamBank's Redis streams.
//!
//! Two groups: `email-verification` (users stream) sends the verification link for each new user;
//! `notifications` (accounts and transfers streams) writes a notification row and sends an email to each
//! party of an account opening, a deposit or a transfer. Several worker processes share the load: each
//! consumer name is unique per process.
//!
//! Delivery is at least once; [`handlers`] make each effect happen once (emails are claimed in Postgres
//! before they are sent). A failed entry stays pending; what happens next depends on why it failed
//! ([`failure`]): a dependency outage is ridden out (the group stops reading new entries and probes until
//! the dependency answers, then drains at full speed), anything else is retried after an exponential
//! backoff with full jitter. Entries left pending by a consumer that died are taken over by the others
//! once it has been idle for [`Config::claim_min_idle`]. An entry that cannot succeed (a permanent
//! failure, [`Config::max_deliveries`] unexplained failures, or older than [`Config::dead_letter_after`])
//! is recorded in the `dead_letters` table, copied to the dead-letter stream and acknowledged, so one
//! poison event never blocks the rest.
//!
//! # Layout
//!
//! - [`Config`]: environment variables.
//! - [`group`]: the consumer groups and their streams.
//! - [`handlers`]: what each group does with an event.
//! - [`handle`]: the trait the consumer machinery hands entries to.
//! - [`consumer`]: reading, acknowledging, and riding out outages.
//! - [`failure`]: telling outages, races and poison apart.
//! - [`pending`]: retries, taking over from dead consumers, dead letters.
//! - [`mail`]: sending email over SMTP.
//! - [`metrics`]: the worker's Prometheus metrics.

pub mod consumer;
pub mod failure;
pub mod group;
pub mod handle;
pub mod handlers;
mod lanes;
pub mod mail;
pub mod metrics;
pub mod pending;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use streambank_config::{positive_duration, values};
use streambank_service::Bank;

pub use consumer::Worker;
pub use group::Group;
pub use handlers::Handlers;

/// The worker's settings, from environment variables (`streambank-worker --help` lists them).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "streambank-worker",
    about = "Consumer groups on StreamBank's event streams: verification emails and notifications."
)]
pub struct Config {
    #[command(flatten)]
    pub database: streambank_config::Database,
    #[command(flatten)]
    pub redis: streambank_config::Redis,
    #[command(flatten)]
    pub streams: streambank_config::Streams,
    #[command(flatten)]
    pub telemetry: streambank_config::Telemetry,
    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:9102", value_parser = values::socket_addr)]
    pub health_addr: SocketAddr,
    /// The SMTP server emails are handed to.
    #[arg(
        long = "smtp-url",
        env = "SMTP_URL",
        default_value = "smtp://127.0.0.1:1025",
        hide_env_values = true
    )]
    pub smtp_url: String,
    /// The sender of every email.
    #[arg(
        long = "mail-from",
        env = "MAIL_FROM",
        default_value = "StreamBank <no-reply@streambank.local>"
    )]
    pub mail_from: String,
    /// The base of the links in emails (the REST listener as users reach it).
    #[arg(long = "public-base-url", env = "PUBLIC_BASE_URL", default_value = "http://localhost:8080", value_parser = values::http_url)]
    pub public_base_url: String,
    /// Deliveries after which an entry that keeps failing for no known reason is dead-lettered.
    #[arg(long = "max-deliveries", env = "WORKER_MAX_DELIVERIES", default_value = "5", value_parser = values::positive::<u64>)]
    pub max_deliveries: u64,
    /// How long an entry must sit idle with another consumer before this one takes it over.
    #[arg(long = "claim-min-idle", env = "WORKER_CLAIM_MIN_IDLE", default_value = "30s", value_parser = positive_duration)]
    pub claim_min_idle: Duration,
    /// The first retry's backoff cap; each further delivery doubles it.
    #[arg(long = "retry-base", env = "WORKER_RETRY_BASE", default_value = "500ms", value_parser = positive_duration)]
    pub retry_base: Duration,
    /// The largest backoff; it also spaces the probes while a dependency is down.
    #[arg(long = "retry-max", env = "WORKER_RETRY_MAX", default_value = "60s", value_parser = positive_duration)]
    pub retry_max: Duration,
    /// How often pending entries are examined.
    #[arg(long = "sweep-interval", env = "WORKER_SWEEP_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub sweep_interval: Duration,
    /// An entry still failing this long after it was published is dead-lettered, whatever the reason.
    #[arg(long = "dead-letter-after", env = "WORKER_DEAD_LETTER_AFTER", default_value = "24h", value_parser = positive_duration)]
    pub dead_letter_after: Duration,
    /// How long a worker's claim on an email delivery holds before another may take it over (longer
    /// than an SMTP exchange may take).
    #[arg(long = "email-lease", env = "WORKER_EMAIL_LEASE", default_value = "60s", value_parser = positive_duration)]
    pub email_lease: Duration,
}

impl Config {
    /// A worker on these Postgres, Redis and stream prefix, with every other setting at its default
    /// (what the environment gives when only those three are set).
    pub fn new(database_url: String, redis_url: String, stream_prefix: String) -> Self {
        Self {
            database: streambank_config::Database::new(database_url),
            redis: streambank_config::Redis::new(redis_url),
            streams: streambank_config::Streams::new(stream_prefix),
            telemetry: streambank_config::Telemetry::default(),
            health_addr: SocketAddr::from(([0, 0, 0, 0], 9102)),
            smtp_url: "smtp://127.0.0.1:1025".to_owned(),
            mail_from: "StreamBank <no-reply@streambank.local>".to_owned(),
            public_base_url: "http://localhost:8080".to_owned(),
            max_deliveries: 5,
            claim_min_idle: Duration::from_secs(30),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(1),
            dead_letter_after: Duration::from_secs(24 * 3600),
            email_lease: Duration::from_secs(60),
        }
    }

    /// Builds a worker: checks the SMTP and Redis URLs, connects lazily to Postgres.
    pub fn build(self) -> anyhow::Result<Worker> {
        let handlers = self.handlers()?;
        Worker::new(self, Arc::new(handlers))
    }

    /// The real handlers for this configuration (tests wrap them).
    pub fn handlers(&self) -> anyhow::Result<Handlers> {
        let options: PgConnectOptions = self.database.url.parse().context("DATABASE_URL")?;
        // A statement that fails on a connection the server ended is an outage failure: its entry is
        // retried.
        let pool = streambank_store::pool_options(8).connect_lazy_with(options);
        Ok(Handlers {
            bank: Bank::new(pool),
            mailer: mail::Mailer::new(&self.smtp_url, &self.mail_from)
                .context("SMTP_URL / MAIL_FROM")?,
            public_base_url: self.public_base_url.clone(),
            claimer: claimer_name(),
            email_lease: self.email_lease,
        })
    }
}

/// A name for this process's email claims, unique per call: host, process id and a random tag.
fn claimer_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!(
        "{host}-{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Runs a worker until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.build()?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_is_what_the_environment_gives_when_only_the_three_are_set() {
        let vars = |name: &str| match name {
            "DATABASE_URL" => Some("postgres://db/x".to_owned()),
            "REDIS_URL" => Some("redis://r:1".to_owned()),
            "STREAM_PREFIX" => Some("p".to_owned()),
            _ => None,
        };
        let read: Config = streambank_config::from_lookup(&vars).expect("defaults parse");
        let built = Config::new("postgres://db/x".into(), "redis://r:1".into(), "p".into());
        assert_eq!(format!("{read:?}"), format!("{built:?}"));
    }
}
