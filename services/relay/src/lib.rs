//! `streambank-relay`: publishes the outbox to Redis Streams.
//!
//! Every business change wrote an outbox row in its own transaction. The relay claims unpublished rows in
//! commit-time order (`FOR UPDATE SKIP LOCKED`), sends them to their streams with pipelined `XADD`s, and
//! marks them published in the same claiming transaction. A crash between the `XADD` and the commit
//! publishes those rows again; consumers deduplicate by event id, so that is allowed.
//!
//! Wake-ups: when idle, the relay waits for the `NOTIFY outbox` that a committing writer sends, with a
//! fallback poll. While busy it polls again at once after a pass that found rows, else after 1 ms, and tells writers (the `relay_state` row) not
//! to notify, because every NOTIFY takes a global lock at commit and, sent by every transfer, halved the
//! ledger's throughput.
//!
//! The outbox is split into `STREAM_PARTITIONS` partitions by a stable hash of each row's aggregate, and
//! one relay at a time publishes each partition, which keeps each aggregate's events in order. The
//! relays that are up share the partitions (`ceil(P / relays)` each), by Postgres advisory locks held on
//! one dedicated connection per relay; a partition whose relay dies is taken over within half a second
//! of its connection's end. With one partition (the default) one relay publishes and the others wait.
//!
//! # Layout
//!
//! - [`Config`]: environment variables.
//! - [`publish`]: [`publish_batch`], one claim–publish–mark pass (tests drive it directly);
//!   [`drain_lane`], passes over one partition until it is empty, each next claim overlapping the
//!   current batch's `XADD`s (and `WAIT`, with `RELAY_MIN_REPLICAS`).
//! - [`partitions`]: membership and the partitions' leadership.
//! - [`Relay::run`]: leadership, wake-ups (`LISTEN outbox` plus a fallback poll), retention, health.
//! - [`metrics`]: the relay's Prometheus metrics.

use std::net::SocketAddr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use streambank_config::{positive_duration, values};

pub mod metrics;
pub mod partitions;
mod process;
pub mod publish;

pub use metrics::RelayMetrics;
pub use process::{REBALANCE_EVERY, Relay};
pub use publish::{Lane, drain, drain_lane, publish_batch};

/// The relay's settings, from environment variables (`streambank-relay --help` lists them).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "streambank-relay",
    about = "Publishes the outbox to Redis Streams."
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
    #[arg(long, env = "HEALTH_ADDR", default_value = "0.0.0.0:9101", value_parser = values::socket_addr)]
    pub health_addr: SocketAddr,
    /// Rows per claim (and per pipelined `XADD` batch).
    #[arg(long = "batch-size", env = "RELAY_BATCH_SIZE", default_value = "500", value_parser = values::positive::<i64>)]
    pub batch_size: i64,
    /// The fallback poll: how long to wait for a notification before looking anyway.
    #[arg(long = "poll-interval", env = "RELAY_POLL_INTERVAL", default_value = "1s", value_parser = positive_duration)]
    pub poll_interval: Duration,
    /// How long published rows are kept (for `bankctl outbox republish`).
    #[arg(long = "outbox-retention", env = "OUTBOX_RETENTION", default_value = "7d", value_parser = positive_duration)]
    pub retention: Duration,
    /// Approximate cap on each stream's length (`XADD MAXLEN ~`).
    #[arg(long = "stream-max-len", env = "STREAM_MAX_LEN", default_value = "1000000", value_parser = values::positive::<u64>)]
    pub max_stream_len: u64,
    /// Replicas that must hold a batch's entries (Redis `WAIT`) before its rows count as published:
    /// 0 for a lone Redis; 1 on a Redis Cluster, whose replication is asynchronous, so that a master
    /// that dies right after `XADD` cannot lose what the relay marked published.
    #[arg(long = "min-replicas", env = "RELAY_MIN_REPLICAS", default_value = "0")]
    pub min_replicas: u32,
    /// How long `WAIT` waits for those replicas before the batch goes again.
    #[arg(long = "wait-timeout", env = "RELAY_WAIT_TIMEOUT", default_value = "1s", value_parser = positive_duration)]
    pub wait_timeout: Duration,
}

/// How the relay connects to Postgres.
///
/// The relay's commits only mark rows published. Losing one in a Postgres crash means those rows are
/// published again, which consumers already tolerate (they deduplicate by event id), so the commits
/// need not wait for the WAL flush (`synchronous_commit = off`): each batch ends one fsync sooner and
/// the next one starts sooner. Writers of business rows keep the default, durable commit.
pub fn connect_options(database_url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    let options: PgConnectOptions = database_url.parse()?;
    Ok(options.options([("synchronous_commit", "off")]))
}
