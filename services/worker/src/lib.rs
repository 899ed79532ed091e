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
pub mod mail;
pub mod metrics;
pub mod pending;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use streambank_service::Bank;

pub use consumer::Worker;
pub use group::Group;
pub use handlers::Handlers;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub redis_url: String,
    pub stream_prefix: String,
    pub health_addr: SocketAddr,
    pub smtp_url: String,
    pub mail_from: String,
    pub public_base_url: String,
    /// Deliveries after which an entry is dead-lettered (`WORKER_MAX_DELIVERIES`, default 5).
    pub max_deliveries: u64,
    /// How long an entry must sit idle with another consumer before this one takes it over
    /// (`WORKER_CLAIM_MIN_IDLE_SECS`, default 30).
    pub claim_min_idle: Duration,
    /// The first retry's backoff cap; each further delivery doubles it (`WORKER_RETRY_BASE_MS`, 500).
    pub retry_base: Duration,
    /// The largest backoff (`WORKER_RETRY_MAX_SECS`, default 60).
    pub retry_max: Duration,
    /// How often pending entries are examined (`WORKER_SWEEP_INTERVAL_MS`, default 1000).
    pub sweep_interval: Duration,
    /// An entry still failing this long after it was published is dead-lettered, whatever the reason
    /// (`WORKER_DEAD_LETTER_AFTER_SECS`, default 86400: a day).
    pub dead_letter_after: Duration,
    /// How long a worker's claim on an email delivery holds before another may take it over
    /// (`WORKER_EMAIL_LEASE_SECS`, default 60; longer than an SMTP exchange may take).
    pub email_lease: Duration,
}

impl Config {
    /// A worker on these Postgres, Redis and stream prefix, with every other setting at its default
    /// (what [`Config::from_env`] gives when only those three are set).
    pub fn new(database_url: String, redis_url: String, stream_prefix: String) -> Self {
        Self {
            database_url,
            redis_url,
            stream_prefix,
            health_addr: SocketAddr::from(([0, 0, 0, 0], 9102)),
            smtp_url: "smtp://127.0.0.1:1025".to_owned(),
            mail_from: "StreamBank <no-reply@streambank.local>".to_owned(),
            public_base_url: "http://localhost:8080".to_owned(),
            max_deliveries: 5,
            claim_min_idle: Duration::from_secs(30),
            retry_base: Duration::from_millis(500),
            retry_max: Duration::from_secs(60),
            sweep_interval: Duration::from_millis(1000),
            dead_letter_after: Duration::from_secs(24 * 3600),
            email_lease: Duration::from_secs(60),
        }
    }

    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &'static str, default: u64| -> anyhow::Result<u64> {
            match var(name) {
                None => Ok(default),
                Some(raw) => raw.parse().ok().filter(|n| *n > 0).with_context(|| {
                    format!("{name} must be a positive whole number, got {raw:?}")
                }),
            }
        };
        let defaults = Self::new(
            var("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/streambank".to_owned()),
            var("REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned()),
            var("STREAM_PREFIX").unwrap_or_else(|| "bank".to_owned()),
        );
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Ok(Self {
            health_addr: match var("HEALTH_ADDR") {
                None => defaults.health_addr,
                Some(raw) => raw
                    .parse()
                    .context("HEALTH_ADDR must be an address such as 0.0.0.0:9102")?,
            },
            smtp_url: var("SMTP_URL").unwrap_or_else(|| defaults.smtp_url.clone()),
            mail_from: var("MAIL_FROM").unwrap_or_else(|| defaults.mail_from.clone()),
            public_base_url: var("PUBLIC_BASE_URL")
                .unwrap_or_else(|| defaults.public_base_url.clone()),
            max_deliveries: number("WORKER_MAX_DELIVERIES", defaults.max_deliveries)?,
            claim_min_idle: Duration::from_secs(number(
                "WORKER_CLAIM_MIN_IDLE_SECS",
                defaults.claim_min_idle.as_secs(),
            )?),
            retry_base: Duration::from_millis(number(
                "WORKER_RETRY_BASE_MS",
                millis(defaults.retry_base),
            )?),
            retry_max: Duration::from_secs(number(
                "WORKER_RETRY_MAX_SECS",
                defaults.retry_max.as_secs(),
            )?),
            sweep_interval: Duration::from_millis(number(
                "WORKER_SWEEP_INTERVAL_MS",
                millis(defaults.sweep_interval),
            )?),
            dead_letter_after: Duration::from_secs(number(
                "WORKER_DEAD_LETTER_AFTER_SECS",
                defaults.dead_letter_after.as_secs(),
            )?),
            email_lease: Duration::from_secs(number(
                "WORKER_EMAIL_LEASE_SECS",
                defaults.email_lease.as_secs(),
            )?),
            ..defaults
        })
    }

    /// Builds a worker: checks the SMTP and Redis URLs, connects lazily to Postgres.
    pub fn build(self) -> anyhow::Result<Worker> {
        let handlers = self.handlers()?;
        Worker::new(self, Arc::new(handlers))
    }

    /// The real handlers for this configuration (tests wrap them).
    pub fn handlers(&self) -> anyhow::Result<Handlers> {
        let options: PgConnectOptions = self.database_url.parse().context("DATABASE_URL")?;
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
