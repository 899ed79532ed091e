//! The consumer-group machinery: read, hand to the handlers, acknowledge; retry with backoff; take over
//! entries of dead consumers; dead-letter poison entries.
//!
//! Each group runs as one task that alternates a blocking `XREADGROUP` (on its own connection, which has
//! no response timeout: `BLOCK` outlives redis-rs's default 500 ms) with a sweep of the pending entries
//! list. Running both in one task means an entry is never handled twice at once by this process.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{Hash as _, Hasher as _};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use futures_util::StreamExt as _;
use redis::aio::MultiplexedConnection;
use redis::streams::{
    StreamAutoClaimReply, StreamClaimReply, StreamId, StreamPendingCountReply, StreamPendingReply,
    StreamRangeReply, StreamReadReply,
};
use redis::{AsyncConnectionConfig, Value};
use streambank_events::{StreamEntry, dead_letter_key, stream_key};
use tracing::Instrument as _;

use crate::Config;
use crate::handlers::{Group, Handlers};

/// Entries one group handles at the same time.
const HANDLERS_IN_FLIGHT: usize = 16;

/// A stream entry as read, with the span of its handling (which continues the trace of the request that
/// caused the event).
#[derive(Debug)]
pub struct Delivery {
    pub entry: StreamEntry,
    pub span: tracing::Span,
}

impl Delivery {
    pub fn new(group: Group, entry: StreamEntry) -> Self {
        let span = tracing::info_span!("handle event", group = group.name(), event_type = %entry.event_type, event_id = %entry.event_id);
        streambank_telemetry::continue_trace(&span, &entry.traceparent);
        Self { entry, span }
    }
}

type Outcome<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something that handles events (the real [`Handlers`], or a test double wrapping them).
pub trait Handle: Send + Sync + std::fmt::Debug {
    /// Handles one entry: `Ok` means done, `Err` means try again later.
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Outcome<'a, anyhow::Result<()>>;

    /// Handles the entries of one read; one outcome per entry, in their order. By default each entry is
    /// handled on its own, up to [`HANDLERS_IN_FLIGHT`] at once.
    fn handle_many<'a>(
        &'a self,
        group: Group,
        deliveries: &'a [Delivery],
    ) -> Outcome<'a, Vec<anyhow::Result<()>>> {
        Box::pin(handle_each(self, group, deliveries))
    }
}

/// Handles each delivery with [`Handle::handle`], concurrently: each event has its own effects and
/// records, so their order does not matter, and one slow SMTP exchange must not hold up the rest. Copies
/// of one event (the relay may publish twice) are handled one after the other, so that the second sees
/// what the first recorded.
pub async fn handle_each<H: Handle + ?Sized>(
    handler: &H,
    group: Group,
    deliveries: &[Delivery],
) -> Vec<anyhow::Result<()>> {
    let mut buckets: Vec<Vec<usize>> = Vec::new();
    let mut bucket_of_event: HashMap<&str, usize> = HashMap::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        let next = buckets.len();
        let bucket = *bucket_of_event
            .entry(delivery.entry.event_id.as_str())
            .or_insert(next);
        if bucket == next {
            buckets.push(Vec::new());
        }
        buckets[bucket].push(i);
    }
    let done: Vec<Vec<(usize, anyhow::Result<()>)>> = futures_util::stream::iter(buckets)
        .map(|bucket| async move {
            let mut outcomes = Vec::with_capacity(bucket.len());
            for i in bucket {
                let Delivery { entry, span } = &deliveries[i];
                let outcome = handler.handle(group, entry).instrument(span.clone()).await;
                outcomes.push((i, outcome));
            }
            outcomes
        })
        .buffer_unordered(HANDLERS_IN_FLIGHT)
        .collect()
        .await;
    let mut outcomes: Vec<Option<anyhow::Result<()>>> = deliveries.iter().map(|_| None).collect();
    for (i, outcome) in done.into_iter().flatten() {
        outcomes[i] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(anyhow::anyhow!("not handled"))))
        .collect()
}

impl Handle for Handlers {
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Outcome<'a, anyhow::Result<()>> {
        Box::pin(Handlers::handle(self, group, entry))
    }

    fn handle_many<'a>(
        &'a self,
        group: Group,
        deliveries: &'a [Delivery],
    ) -> Outcome<'a, Vec<anyhow::Result<()>>> {
        Box::pin(async move {
            if group == Group::Notifications {
                self.notify_many(deliveries).await
            } else {
                handle_each(self, group, deliveries).await
            }
        })
    }
}

/// The worker's Prometheus metrics (served at `/metrics` on `HEALTH_ADDR`).
#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub registry: streambank_telemetry::metrics::Registry,
    processed: streambank_telemetry::metrics::Counter,
    retried: streambank_telemetry::metrics::Counter,
    dead_lettered: streambank_telemetry::metrics::Counter,
    handling: streambank_telemetry::metrics::Histogram,
    pending: streambank_telemetry::metrics::Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        use streambank_telemetry::metrics::{LATENCY_BUCKETS, Registry};
        let registry = Registry::default();
        Self {
            processed: registry.counter(
                "worker_events_total",
                "Entries handled, by group and outcome (ok or error).",
                &["group", "outcome"],
            ),
            retried: registry.counter(
                "worker_retries_total",
                "Failed entries claimed again for a retry, by group.",
                &["group"],
            ),
            dead_lettered: registry.counter(
                "worker_dead_lettered_total",
                "Entries moved to the dead-letter stream, by group.",
                &["group"],
            ),
            handling: registry.histogram(
                "worker_handling_seconds",
                "Time from reading an entry to its outcome (entries of one read are handled together), by group.",
                &["group"],
                &LATENCY_BUCKETS,
            ),
            pending: registry.gauges(
                "worker_pending_entries",
                "Entries delivered and not yet acknowledged, by group and stream, as of this process's last sweep.",
                &["group", "stream"],
            ),
            registry,
        }
    }
}

/// A worker process: its consumer name, its handlers and its connections.
#[derive(Debug, Clone)]
pub struct Worker {
    config: Config,
    handler: Arc<dyn Handle>,
    redis: redis::Client,
    consumer: String,
    /// The last error of each entry this process failed, for the dead-letter record.
    last_errors: Arc<Mutex<HashMap<String, String>>>,
    metrics: WorkerMetrics,
}

fn fields(id: &StreamId) -> HashMap<String, String> {
    id.map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value::<String>(v.clone())
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect()
}

impl Worker {
    pub fn new(config: Config, handler: Arc<dyn Handle>) -> anyhow::Result<Self> {
        let redis = redis::Client::open(config.redis_url.as_str())
            .context("REDIS_URL is not a Redis URL")?;
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
        let consumer = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Self {
            config,
            handler,
            redis,
            consumer,
            last_errors: Arc::default(),
            metrics: WorkerMetrics::default(),
        })
    }

    /// The worker's metrics (tests read them).
    pub fn metrics(&self) -> &WorkerMetrics {
        &self.metrics
    }

    pub fn consumer_name(&self) -> &str {
        &self.consumer
    }

    fn keys(&self, group: Group) -> Vec<String> {
        group
            .streams()
            .iter()
            .map(|s| stream_key(&self.config.stream_prefix, *s))
            .collect()
    }

    /// A connection for non-blocking commands.
    pub async fn connection(&self) -> anyhow::Result<MultiplexedConnection> {
        self.redis
            .get_multiplexed_async_connection()
            .await
            .context("cannot connect to Redis")
    }

    /// Creates the consumer groups (and their streams) if they do not exist; `BUSYGROUP` is fine. New
    /// groups start at the beginning of the stream, so events published before the first worker started
    /// are handled too.
    pub async fn ensure_groups(&self, conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
        for group in Group::ALL {
            for key in self.keys(group) {
                let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&key)
                    .arg(group.name())
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(conn)
                    .await;
                match created {
                    Ok(()) => {}
                    Err(e) if e.code() == Some("BUSYGROUP") => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("cannot create group {} on {key}", group.name())
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads new entries for `group` (waiting up to `block` when there are none) and handles them.
    /// Returns how many entries it read.
    pub async fn read_once(
        &self,
        blocking: &mut MultiplexedConnection,
        conn: &mut MultiplexedConnection,
        group: Group,
        block: Option<Duration>,
    ) -> anyhow::Result<usize> {
        let keys = self.keys(group);
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group.name())
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(64);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&keys);
        for _ in &keys {
            cmd.arg(">");
        }
        let reply: Option<StreamReadReply> = cmd
            .query_async(blocking)
            .await
            .context("XREADGROUP failed")?;
        let entries: Vec<(String, StreamId)> = reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|stream| {
                let key = stream.key;
                stream.ids.into_iter().map(move |id| (key.clone(), id))
            })
            .collect();
        let read = entries.len();
        let mut deliveries = Vec::with_capacity(read);
        let mut ids = Vec::with_capacity(read);
        for (key, id) in entries {
            match StreamEntry::from_fields(fields(&id)) {
                Ok(entry) => {
                    deliveries.push(Delivery::new(group, entry));
                    ids.push((key, id.id));
                }
                Err(missing) => {
                    let error = anyhow::anyhow!("the entry has no {missing} field");
                    self.failed(group, &id.id, &error);
                }
            }
        }
        if deliveries.is_empty() {
            return Ok(read);
        }
        let started = std::time::Instant::now();
        let outcomes = self.handler.handle_many(group, &deliveries).await;
        debug_assert_eq!(outcomes.len(), deliveries.len(), "one outcome per entry");
        self.settle(conn, group, &ids, outcomes, started.elapsed())
            .await?;
        Ok(read)
    }

    /// Records the outcomes of entries handled together: counts and times them, acknowledges the ones
    /// that succeeded (one `XACK` per stream) and leaves the others pending for a retry. Entries
    /// without an outcome stay pending too.
    async fn settle(
        &self,
        conn: &mut MultiplexedConnection,
        group: Group,
        ids: &[(String, String)],
        outcomes: Vec<anyhow::Result<()>>,
        elapsed: Duration,
    ) -> anyhow::Result<()> {
        let mut done: Vec<(&str, Vec<&str>)> = Vec::new();
        for ((key, id), outcome) in ids.iter().zip(outcomes) {
            self.metrics
                .handling
                .observe_duration(&[group.name()], elapsed);
            match outcome {
                Ok(()) => {
                    self.metrics.processed.inc(&[group.name(), "ok"]);
                    match done.iter_mut().find(|(k, _)| k == key) {
                        Some((_, acked)) => acked.push(id),
                        None => done.push((key, vec![id])),
                    }
                }
                Err(e) => self.failed(group, id, &e),
            }
        }
        for (key, acked) in done {
            let _: i64 = redis::cmd("XACK")
                .arg(key)
                .arg(group.name())
                .arg(&acked)
                .query_async(conn)
                .await?;
            let mut errors = self.lock_errors();
            for id in acked {
                errors.remove(id);
            }
        }
        Ok(())
    }

    /// Records a failed entry: it stays pending and is retried after its backoff.
    fn failed(&self, group: Group, id: &str, error: &anyhow::Error) {
        self.metrics.processed.inc(&[group.name(), "error"]);
        tracing::warn!(group = group.name(), entry = %id, error = format!("{error:#}"), "handling failed; will retry");
        self.lock_errors()
            .insert(id.to_owned(), format!("{error:#}"));
    }

    /// Handles one entry on its own (a retry, or an entry taken over): acknowledged on success; on
    /// failure left pending for a retry.
    async fn process(
        &self,
        conn: &mut MultiplexedConnection,
        group: Group,
        key: &str,
        id: &StreamId,
    ) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let outcome = match StreamEntry::from_fields(fields(id)) {
            Ok(entry) => {
                let Delivery { entry, span } = Delivery::new(group, entry);
                self.handler.handle(group, &entry).instrument(span).await
            }
            Err(missing) => Err(anyhow::anyhow!("the entry has no {missing} field")),
        };
        let ids = [(key.to_owned(), id.id.clone())];
        self.settle(conn, group, &ids, vec![outcome], started.elapsed())
            .await
    }

    fn lock_errors(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.last_errors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The backoff before retry number `deliveries`: full jitter (uniform in 0..cap) with
    /// cap = min(retry_max, retry_base * 2^(deliveries - 1)), drawn from the entry id so it is stable
    /// across sweeps.
    fn backoff(&self, entry_id: &str, deliveries: usize) -> Duration {
        let exponent = u32::try_from(deliveries.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        let cap = self
            .config
            .retry_base
            .saturating_mul(1 << exponent)
            .min(self.config.retry_max);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (entry_id, deliveries).hash(&mut hasher);
        let fraction = (hasher.finish() % 10_000) as f64 / 10_000.0;
        cap.mul_f64(fraction)
    }

    /// Examines the group's pending entries: retries this process's failed entries once their backoff has
    /// passed, takes over entries idle with other consumers for `claim_min_idle` (`XAUTOCLAIM`), and
    /// dead-letters entries delivered `max_deliveries` times. Returns how many entries it handled.
    pub async fn sweep_once(
        &self,
        conn: &mut MultiplexedConnection,
        group: Group,
    ) -> anyhow::Result<usize> {
        let mut handled = 0;
        for stream in group.streams() {
            let key = stream_key(&self.config.stream_prefix, *stream);
            // The group's whole backlog on this stream, for the gauge (the list below reads at most 100).
            let summary: StreamPendingReply = redis::cmd("XPENDING")
                .arg(&key)
                .arg(group.name())
                .query_async(conn)
                .await?;
            self.metrics.pending.set_labeled(
                &[group.name(), stream.name()],
                i64::try_from(summary.count()).unwrap_or(i64::MAX),
            );
            let pending: StreamPendingCountReply = redis::cmd("XPENDING")
                .arg(&key)
                .arg(group.name())
                .arg("-")
                .arg("+")
                .arg(100)
                .query_async(conn)
                .await?;
            let claim_min_idle = self.config.claim_min_idle.as_millis() as usize;
            let mut retry = Vec::new();
            for p in pending.ids {
                let mine = p.consumer == self.consumer;
                let backoff = self.backoff(&p.id, p.times_delivered).as_millis() as usize;
                let due = if mine {
                    p.last_delivered_ms >= backoff
                } else {
                    p.last_delivered_ms >= claim_min_idle
                };
                if !due {
                    continue;
                }
                if p.times_delivered as u64 >= self.config.max_deliveries {
                    self.dead_letter(conn, group, &key, &p.id, p.times_delivered)
                        .await?;
                } else if mine {
                    retry.push((p.id, backoff));
                }
            }
            for (id, min_idle) in retry {
                let claimed: StreamClaimReply = redis::cmd("XCLAIM")
                    .arg(&key)
                    .arg(group.name())
                    .arg(&self.consumer)
                    .arg(min_idle)
                    .arg(&id)
                    .query_async(conn)
                    .await?;
                self.metrics
                    .retried
                    .add(&[group.name()], claimed.ids.len() as u64);
                for entry in &claimed.ids {
                    self.process(conn, group, &key, entry).await?;
                    handled += 1;
                }
            }
            // Entries whose consumer died: take them over.
            let reclaimed: StreamAutoClaimReply = redis::cmd("XAUTOCLAIM")
                .arg(&key)
                .arg(group.name())
                .arg(&self.consumer)
                .arg(claim_min_idle)
                .arg("0-0")
                .arg("COUNT")
                .arg(100)
                .query_async(conn)
                .await?;
            for entry in &reclaimed.claimed {
                tracing::info!(group = group.name(), entry = %entry.id, "took over an entry from an idle consumer");
                self.process(conn, group, &key, entry).await?;
                handled += 1;
            }
        }
        Ok(handled)
    }

    /// Moves an entry to the dead-letter stream, with its origin and last error, and acknowledges it.
    async fn dead_letter(
        &self,
        conn: &mut MultiplexedConnection,
        group: Group,
        key: &str,
        id: &str,
        deliveries: usize,
    ) -> anyhow::Result<()> {
        let original: StreamRangeReply = redis::cmd("XRANGE")
            .arg(key)
            .arg(id)
            .arg(id)
            .query_async(conn)
            .await?;
        let error = self.lock_errors().remove(id).unwrap_or_else(|| {
            "no error recorded (the consumer that failed it is gone)".to_owned()
        });
        let mut cmd = redis::cmd("XADD");
        cmd.arg(dead_letter_key(&self.config.stream_prefix))
            .arg("*");
        if let Some(entry) = original.ids.first() {
            for (field, value) in &entry.map {
                if let Value::BulkString(bytes) = value {
                    cmd.arg(field).arg(bytes.as_slice());
                }
            }
        }
        cmd.arg("dlq_stream")
            .arg(key)
            .arg("dlq_entry_id")
            .arg(id)
            .arg("dlq_group")
            .arg(group.name());
        cmd.arg("dlq_deliveries")
            .arg(deliveries)
            .arg("dlq_error")
            .arg(&error);
        let _: String = cmd.query_async(conn).await?;
        let _: i64 = redis::cmd("XACK")
            .arg(key)
            .arg(group.name())
            .arg(id)
            .query_async(conn)
            .await?;
        self.metrics.dead_lettered.inc(&[group.name()]);
        tracing::error!(group = group.name(), entry = %id, deliveries, error, "entry dead-lettered");
        Ok(())
    }

    /// Handles everything currently waiting for every group, without blocking: for tests that want
    /// determinism instead of sleeps. Returns how many entries were read.
    pub async fn drain(&self) -> anyhow::Result<usize> {
        let mut conn = self.connection().await?;
        self.ensure_groups(&mut conn).await?;
        let mut total = 0;
        for group in Group::ALL {
            let mut reader = conn.clone();
            loop {
                let read = self.read_once(&mut reader, &mut conn, group, None).await?;
                total += read;
                if read == 0 {
                    break;
                }
            }
        }
        Ok(total)
    }

    /// Runs every group until `shutdown` completes; in-flight entries are finished and acknowledged first.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let ready_self = self.clone();
        let mut health_stop = stop_rx.clone();
        let (addr, health) = streambank_telemetry::health::serve(
            self.config.health_addr,
            Arc::new(move || {
                let worker = ready_self.clone();
                Box::pin(async move { worker.readiness().await })
            }),
            self.metrics.registry.clone(),
            async move {
                let _ = health_stop.wait_for(|stop| *stop).await;
            },
        )
        .await
        .with_context(|| format!("cannot listen on HEALTH_ADDR {}", self.config.health_addr))?;
        tracing::info!(%addr, consumer = %self.consumer, "worker health endpoints listening");

        let mut tasks = tokio::task::JoinSet::new();
        for group in Group::ALL {
            let worker = self.clone();
            let stop = stop_rx.clone();
            tasks.spawn(async move { worker.run_group(group, stop).await });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!(error = format!("{e:#}"), "a consumer group loop failed");
            }
        }
        let _ = health.await;
        tracing::info!("worker stopped");
        Ok(())
    }

    async fn run_group(
        &self,
        group: Group,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<()> {
        let block = Duration::from_millis(1000);
        while !*stop.borrow() {
            let session = async {
                let mut conn = self.connection().await?;
                self.ensure_groups(&mut conn).await?;
                // The blocking read gets a connection of its own, without a response timeout.
                let config = AsyncConnectionConfig::new().set_response_timeout(None);
                let mut blocking = self
                    .redis
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                let mut last_sweep = tokio::time::Instant::now();
                while !*stop.borrow() {
                    self.read_once(&mut blocking, &mut conn, group, Some(block))
                        .await?;
                    if last_sweep.elapsed() >= self.config.sweep_interval {
                        self.sweep_once(&mut conn, group).await?;
                        last_sweep = tokio::time::Instant::now();
                    }
                }
                anyhow::Ok(())
            };
            if let Err(e) = session.await {
                tracing::warn!(
                    group = group.name(),
                    error = format!("{e:#}"),
                    "consumer loop failed; retrying in 1 s"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Ok(())
    }

    async fn readiness(&self) -> Result<serde_json::Value, serde_json::Value> {
        let redis = match self.connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        };
        let details = serde_json::json!({ "redis": if redis { "ok" } else { "unavailable" }, "consumer": self.consumer });
        if redis { Ok(details) } else { Err(details) }
    }
}
