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
//! One relay publishes at a time, which keeps each aggregate's events in order: leadership is a Postgres
//! advisory lock held on a dedicated connection. A standby retries every second and takes over as soon
//! as the leader's connection dies.
//!
//! # Layout
//!
//! - [`Config`]: environment variables.
//! - [`publish_batch`]: one claim–publish–mark pass (tests drive it directly); [`drain`]: passes until
//!   the outbox is empty, each next claim overlapping the current batch's `XADD`s.
//! - [`Relay::run`]: leadership, wake-ups (`LISTEN outbox` plus a fallback poll), retention, health.
//! - [`metrics`]: the relay's Prometheus metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{Connection, PgConnection, PgPool};
use streambank_config::{positive_duration, values};
use streambank_events::{EventType, Stream, StreamEntry, stream_key};
use streambank_store::relay;
use streambank_telemetry::health::{Readiness, ping_redis};
use streambank_telemetry::shutdown::{CancellationToken, stop_token};

pub mod metrics;

pub use metrics::RelayMetrics;

/// While the relay published within this long, it polls every [`BUSY_POLL`] instead of waiting for a
/// NOTIFY, and writers skip the NOTIFY.
const BUSY_FOR: Duration = Duration::from_secs(1);
const BUSY_POLL: Duration = Duration::from_millis(1);
/// How often the leader checks that the connection holding its advisory lock is still there (not on
/// every busy poll: that round trip would be a third of each poll's work).
const LOCK_CHECK_EVERY: Duration = Duration::from_millis(500);

/// The advisory lock whose holder is the publishing relay.
const LEADER_LOCK: i64 = 0x5354_5245_414d_424b; // "STREAMBK"

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
}

/// The stream entry for an outbox row.
fn entry(row: &relay::OutboxRow) -> StreamEntry {
    StreamEntry {
        event_id: row.id.to_string(),
        event_type: row.event_type.clone(),
        aggregate_type: row.aggregate_type.clone(),
        aggregate_id: row.aggregate_id.clone(),
        occurred_at: row
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        traceparent: row.traceparent.clone().unwrap_or_default(),
        payload: row.payload.clone(),
    }
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

/// Claims up to `batch_size` unpublished rows, publishes them with one pipelined round trip to Redis, and
/// marks them published. Returns how many rows it published (0: nothing was waiting).
pub async fn publish_batch(
    pool: &PgPool,
    redis: &mut MultiplexedConnection,
    prefix: &str,
    batch_size: i64,
    max_stream_len: u64,
) -> anyhow::Result<usize> {
    let batch = Batch::claim(pool, batch_size).await?;
    let published = batch.rows.len();
    batch.publish(redis, prefix, max_stream_len, None).await?;
    Ok(published)
}

/// Publishes batches until one comes back short of `batch_size` or `stop` says so; returns how many rows
/// were published. The claim of each next batch runs while the current one is on its way to Redis
/// (`SKIP LOCKED` keeps the two apart), so Postgres and Redis work at the same time instead of taking
/// turns. A batch is sent only after the one before it was, so streams get events in commit-time order.
#[tracing::instrument(name = "Drain the outbox", skip(pool, redis, metrics, stop))]
pub async fn drain(
    pool: &PgPool,
    redis: &mut MultiplexedConnection,
    prefix: &str,
    batch_size: i64,
    max_stream_len: u64,
    metrics: Option<&RelayMetrics>,
    stop: impl Fn() -> bool,
) -> anyhow::Result<usize> {
    let mut total = 0;
    let mut next = Batch::claim(pool, batch_size).await?;
    loop {
        let batch = next;
        let full = batch.rows.len() as i64 >= batch_size;
        let size = batch.rows.len();
        if !full || stop() {
            batch
                .publish(redis, prefix, max_stream_len, metrics)
                .await?;
            return Ok(total + size);
        }
        // On failure the claimed next batch is dropped, which rolls it back: its rows stay unpublished.
        let (published, claimed) = tokio::join!(
            batch.publish(redis, prefix, max_stream_len, metrics),
            Batch::claim(pool, batch_size)
        );
        published?;
        total += size;
        next = claimed?;
    }
}

/// Rows claimed (and marked published) in a transaction that is still open.
struct Batch {
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
    rows: Vec<relay::OutboxRow>,
}

impl Batch {
    async fn claim(pool: &PgPool, batch_size: i64) -> anyhow::Result<Self> {
        let mut tx = pool.begin().await?;
        let rows = relay::claim(&mut tx, batch_size).await?;
        Ok(Self { tx, rows })
    }

    /// Sends the rows to their streams in one pipelined round trip, then commits the claim.
    #[tracing::instrument(name = "Publish an outbox batch", skip_all, fields(rows = self.rows.len()))]
    async fn publish(
        self,
        redis: &mut MultiplexedConnection,
        prefix: &str,
        max_stream_len: u64,
        metrics: Option<&RelayMetrics>,
    ) -> anyhow::Result<()> {
        let Self { tx, rows } = self;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(());
        }
        // One span per event, continuing the trace of the request that wrote it; the stream entry
        // carries this span's context on to the worker, so a trace reads request -> publish -> handling.
        let mut published = Vec::with_capacity(rows.len());
        for row in &rows {
            let span = tracing::info_span!("publish event", event_type = %row.event_type, event_id = %row.id);
            streambank_telemetry::continue_trace(
                &span,
                row.traceparent.as_deref().unwrap_or_default(),
            );
            let mut entry = entry(row);
            if let Some(traceparent) = streambank_telemetry::traceparent_of(&span) {
                entry.traceparent = traceparent;
            }
            // An event type this relay does not know (written by a newer version) still travels, on a
            // stream named after its aggregate, rather than blocking everything behind it.
            let stream = EventType::parse(&row.event_type)
                .map_or_else(|| fallback_stream(&row.aggregate_type), EventType::stream);
            published.push((span, stream, entry));
        }
        let mut pipe = redis::pipe();
        for (_, stream, entry) in &published {
            let cmd = pipe
                .cmd("XADD")
                .arg(stream_key(prefix, *stream))
                .arg("MAXLEN")
                .arg("~")
                .arg(max_stream_len)
                .arg("*");
            for (field, value) in entry.to_fields() {
                cmd.arg(field).arg(value);
            }
        }
        let _ids: Vec<String> = pipe
            .query_async(redis)
            .await
            .context("XADD pipeline failed")?;
        // The claim marked the rows published; committing makes that stand, now that Redis has them.
        tx.commit().await?;
        if let Some(m) = metrics {
            let now = chrono::Utc::now();
            m.batch(rows.len());
            for (row, (_, stream, _)) in rows.iter().zip(&published) {
                let lag = (now - row.created_at).num_microseconds().unwrap_or(0) as f64 / 1e6;
                m.published(stream.name(), lag);
            }
        }
        tracing::debug!(rows = rows.len(), "published");
        Ok(())
    }
}

fn fallback_stream(aggregate_type: &str) -> Stream {
    match aggregate_type {
        "user" => Stream::Users,
        "account" => Stream::Accounts,
        _ => Stream::Transfers,
    }
}

/// A relay process.
#[derive(Debug, Clone)]
pub struct Relay {
    config: Config,
    pool: PgPool,
    redis: redis::Client,
    leader: Arc<AtomicBool>,
    metrics: RelayMetrics,
}

impl Relay {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let pool = streambank_store::pool_options(4)
            .connect_lazy_with(connect_options(&config.database.url).context("DATABASE_URL")?);
        let redis = redis::Client::open(config.redis.url.as_str())
            .context("REDIS_URL is not a Redis URL")?;
        Ok(Self {
            config,
            pool,
            redis,
            leader: Arc::default(),
            metrics: RelayMetrics::default(),
        })
    }

    /// The relay's metrics, as `/metrics` serves them.
    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// Whether this process currently holds leadership and publishes.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire)
    }

    /// Serves health, then alternates between standby and leadership until `shutdown` completes. A
    /// batch in flight when shutdown arrives is finished first.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = stop_token(shutdown);
        let (_, health) = streambank_telemetry::health::serve(
            self.config.health_addr,
            self.clone(),
            |relay| async move { relay.readiness().await },
            self.metrics.registry.clone(),
            &stop,
        )
        .await?;

        while !stop.is_cancelled() {
            match self.lead(&stop).await {
                Ok(()) => {}
                Err(e) => {
                    self.leader.store(false, Ordering::Release);
                    self.metrics.leading(false);
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "relay lost its footing; retrying in 1 s"
                    );
                    tokio::select! {
                        () = stop.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        self.leader.store(false, Ordering::Release);
        self.metrics.leading(false);
        let _ = health.await;
        tracing::info!("relay stopped");
        Ok(())
    }

    async fn readiness(&self) -> Result<serde_json::Value, serde_json::Value> {
        Readiness::default()
            .check("postgres", sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .check("redis", ping_redis(&self.redis))
            .await
            .detail(
                "role",
                if self.is_leader() {
                    "leader"
                } else {
                    "standby"
                },
            )
            .report()
    }

    /// Waits for leadership, then publishes until shutdown or until the lock connection fails.
    async fn lead(&self, stop: &CancellationToken) -> anyhow::Result<()> {
        let options: PgConnectOptions = self.config.database.url.parse()?;
        let mut lock_conn = PgConnection::connect_with(&options)
            .await
            .context("cannot connect to Postgres")?;
        loop {
            let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut lock_conn)
                .await?;
            if acquired {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
        tracing::info!("relay is the leader");
        self.leader.store(true, Ordering::Release);
        self.metrics.leading(true);

        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen("outbox").await?;
        let mut redis = self
            .redis
            .get_multiplexed_async_connection()
            .await
            .context("cannot connect to Redis")?;
        let mut last_retention = tokio::time::Instant::now() - Duration::from_secs(3600);
        let mut last_published = tokio::time::Instant::now();
        let mut last_lock_check = tokio::time::Instant::now();
        loop {
            let found = self.drain(&mut redis, stop).await? > 0;
            if found {
                last_published = tokio::time::Instant::now();
            }
            if stop.is_cancelled() {
                break;
            }
            if last_retention.elapsed() > Duration::from_secs(60) {
                let before =
                    chrono::Utc::now() - chrono::Duration::from_std(self.config.retention)?;
                let deleted = relay::delete_published_before(&self.pool, before).await?;
                if deleted > 0 {
                    tracing::info!(deleted, "deleted published outbox rows past retention");
                }
                last_retention = tokio::time::Instant::now();
            }
            // Keep leadership honest: if the lock's connection is gone, so is the lock.
            if last_lock_check.elapsed() >= LOCK_CHECK_EVERY {
                sqlx::query("SELECT 1")
                    .execute(&mut lock_conn)
                    .await
                    .context("leader lock connection lost")?;
                last_lock_check = tokio::time::Instant::now();
            }

            // Busy: poll again at once if that pass found rows (more are likely on their way), else
            // shortly; and let writers skip the NOTIFY (and its global lock).
            if found {
                continue;
            }
            if last_published.elapsed() < BUSY_FOR {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(BUSY_POLL) => {}
                }
                continue;
            }
            // Idle: ask writers to notify, look once more (a commit that saw "busy" just before this must
            // not wait for the fallback poll), then wait for a notification.
            relay::set_listening(&self.pool, true).await?;
            if self.drain(&mut redis, stop).await? == 0 {
                tokio::select! {
                    () = stop.cancelled() => {}
                    notification = listener.recv() => { notification?; }
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
            relay::set_listening(&self.pool, false).await?;
            last_published = tokio::time::Instant::now();
        }
        relay::set_listening(&self.pool, true).await.ok();
        self.leader.store(false, Ordering::Release);
        self.metrics.leading(false);
        let _ = lock_conn.close().await;
        Ok(())
    }
}

impl Relay {
    /// Publishes batches until one comes back short. Returns how many rows were published.
    async fn drain(
        &self,
        redis: &mut MultiplexedConnection,
        stop: &CancellationToken,
    ) -> anyhow::Result<usize> {
        drain(
            &self.pool,
            redis,
            &self.config.streams.prefix,
            self.config.batch_size,
            self.config.max_stream_len,
            Some(&self.metrics),
            || stop.is_cancelled(),
        )
        .await
    }
}
