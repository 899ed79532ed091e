//! The consumer-group machinery: read, hand to the handlers, acknowledge, and decide what a failure
//! means ([`crate::failure`]); the pending entries are swept in [`crate::pending`].
//!
//! Each lane of a group (all its keys on a lone Redis, one partition's on a Redis Cluster) runs as one
//! task, in [`crate::lanes`], that alternates a blocking `XREADGROUP` (on its own connection, which has
//! no response timeout: `BLOCK` outlives redis-rs's default 500 ms) with, in the group's first lane, a
//! sweep of the pending entries list. Running both in one task means an entry is never handled twice at
//! once by this process.
//!
//! When a dependency is down (Postgres or the SMTP server), a group stops reading new entries: it probes
//! with a few of its failed entries at growing, jittered intervals (capped at `WORKER_RETRY_MAX`) and
//! reads again at full speed once a probe succeeds. Entries that failed for that reason are never
//! dead-lettered by count, only once older than `WORKER_DEAD_LETTER_AFTER`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use redis::streams::{StreamId, StreamReadReply};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use streambank_bus::{Bus, BusConnection};
use streambank_events::{StreamEntry, stream_key};
use tokio::time::Instant;

use crate::Config;
use crate::failure::{Failure, Poison};
use crate::group::Group;
pub use crate::handle::{Delivery, Handle, handle_each};
pub use crate::metrics::WorkerMetrics;

/// Why an entry of this process last failed, for its retry and its dead-letter record.
#[derive(Debug, Clone)]
pub(crate) struct FailureRecord {
    pub(crate) kind: Failure,
    pub(crate) error: String,
    pub(crate) first_failed_at: chrono::DateTime<chrono::Utc>,
}

/// A group's view of its dependencies while they fail: no new reads until `next_probe`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outage {
    pub(crate) failures: u32,
    pub(crate) next_probe: Instant,
}

/// A stream entry this process holds (read, or claimed from the pending list), with how many times it
/// has been delivered.
#[derive(Debug)]
pub(crate) struct Held {
    pub(crate) key: String,
    pub(crate) id: StreamId,
    pub(crate) deliveries: u64,
}

/// A worker process: its consumer name, its handlers and its connections.
#[derive(Debug, Clone)]
pub struct Worker {
    pub(crate) config: Config,
    handler: Arc<dyn Handle>,
    pub(crate) bus: Bus,
    /// Where dead letters are recorded.
    pub(crate) db: PgPool,
    pub(crate) consumer: String,
    /// Why each entry this process failed last failed (removed once it succeeds or is dead-lettered).
    failures: Arc<Mutex<HashMap<String, FailureRecord>>>,
    /// The groups whose dependencies are down.
    pub(crate) outages: Arc<Mutex<HashMap<Group, Outage>>>,
    /// Each group's pending entries per key at its last sweep, for the `pending` gauge.
    pub(crate) pending_counts: Arc<Mutex<HashMap<(Group, String), u64>>>,
    pub(crate) metrics: WorkerMetrics,
}

pub(crate) fn fields(id: &StreamId) -> HashMap<String, String> {
    id.map
        .iter()
        .filter_map(|(k, v)| {
            redis::from_redis_value::<String>(v.clone())
                .ok()
                .map(|v| (k.clone(), v))
        })
        .collect()
}

/// Locks a mutex whose data stays consistent even if a holder panicked.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Worker {
    pub fn new(config: Config, handler: Arc<dyn Handle>) -> anyhow::Result<Self> {
        let bus = Bus::open(&config.redis.url).context("REDIS_URL is not a Redis URL")?;
        anyhow::ensure!(
            !bus.is_cluster() || config.streams.partitions > 1,
            "REDIS_URL names a Redis Cluster: STREAM_PARTITIONS must be 2 or more, so that each \
             partition's streams share a hash tag (a slot)"
        );
        let options: PgConnectOptions = config.database.url.parse().context("DATABASE_URL")?;
        let db = streambank_store::pool_options(2).connect_lazy_with(options);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
        let consumer = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Self {
            config,
            handler,
            bus,
            db,
            consumer,
            failures: Arc::default(),
            outages: Arc::default(),
            pending_counts: Arc::default(),
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

    /// The keys `group` reads, partition by partition: each of its streams under each partition's
    /// prefix (a partition's keys share a hash tag, so they share a slot).
    fn partition_keys(&self, group: Group) -> Vec<Vec<String>> {
        self.config
            .streams
            .partition_prefixes()
            .iter()
            .map(|prefix| {
                group
                    .streams()
                    .iter()
                    .map(|s| stream_key(prefix, *s))
                    .collect()
            })
            .collect()
    }

    /// Every key `group` reads.
    pub(crate) fn keys(&self, group: Group) -> Vec<String> {
        self.partition_keys(group).concat()
    }

    /// The sets of keys `group` reads with one `XREADGROUP` each, each in a loop of its own: all its
    /// keys at once on a lone Redis; one partition's on a Redis Cluster, where a command may not
    /// cross slots.
    pub(crate) fn lanes(&self, group: Group) -> Vec<Vec<String>> {
        if self.bus.is_cluster() {
            self.partition_keys(group)
        } else {
            vec![self.keys(group)]
        }
    }

    /// A connection for non-blocking commands.
    pub async fn connection(&self) -> anyhow::Result<BusConnection> {
        self.bus.connect().await.context("cannot connect to Redis")
    }

    /// Creates the consumer groups (and their streams) if they do not exist; `BUSYGROUP` is fine. New
    /// groups start at the beginning of the stream, so events published before the first worker started
    /// are handled too.
    pub async fn ensure_groups(&self, conn: &mut BusConnection) -> anyhow::Result<()> {
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

    /// Reads up to `count` new entries for `group` (waiting up to `block` when there are none) and
    /// handles them. Returns how many entries it read.
    pub async fn read_once(
        &self,
        blocking: &mut BusConnection,
        conn: &mut BusConnection,
        group: Group,
        block: Option<Duration>,
    ) -> anyhow::Result<usize> {
        let keys = self.keys(group);
        self.read(blocking, conn, group, &keys, block, READ_COUNT)
            .await
    }

    pub(crate) async fn read(
        &self,
        blocking: &mut BusConnection,
        conn: &mut BusConnection,
        group: Group,
        keys: &[String],
        block: Option<Duration>,
        count: usize,
    ) -> anyhow::Result<usize> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group.name())
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(count);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(keys);
        for _ in keys {
            cmd.arg(">");
        }
        let reply: Option<StreamReadReply> = cmd
            .query_async(blocking)
            .await
            .context("XREADGROUP failed")?;
        let held: Vec<Held> = reply
            .map(|r| r.keys)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|stream| {
                let key = stream.key;
                stream.ids.into_iter().map(move |id| Held {
                    key: key.clone(),
                    id,
                    deliveries: 1,
                })
            })
            .collect();
        let read = held.len();
        self.handle_held(conn, group, held).await?;
        Ok(read)
    }

    /// Keeps this consumer known to be alive while it reads nothing (a group waiting out an outage):
    /// a read of its own history past its newest entry returns nothing, and refreshes the consumer's
    /// idle time, which is how the other workers tell a live consumer from a dead one.
    pub(crate) async fn touch(
        &self,
        conn: &mut BusConnection,
        group: Group,
        keys: &[String],
    ) -> anyhow::Result<()> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(group.name())
            .arg(&self.consumer)
            .arg("COUNT")
            .arg(1)
            .arg("STREAMS")
            .arg(keys);
        for _ in keys {
            cmd.arg("18446744073709551615-0");
        }
        let _: Option<StreamReadReply> = cmd.query_async(conn).await?;
        Ok(())
    }

    /// Handles entries this process holds, in batches of [`READ_COUNT`], and settles each.
    pub(crate) async fn handle_held(
        &self,
        conn: &mut BusConnection,
        group: Group,
        held: Vec<Held>,
    ) -> anyhow::Result<usize> {
        let total = held.len();
        let mut held = held.into_iter().peekable();
        while held.peek().is_some() {
            let chunk: Vec<Held> = held.by_ref().take(READ_COUNT).collect();
            let mut deliveries = Vec::with_capacity(chunk.len());
            let mut parsed = Vec::with_capacity(chunk.len());
            let mut outcomes_of_unparsed = Vec::new();
            for h in chunk {
                match StreamEntry::from_fields(fields(&h.id)) {
                    Ok(entry) => {
                        deliveries.push(Delivery::new(group, entry));
                        parsed.push(h);
                    }
                    Err(missing) => {
                        let error =
                            anyhow::Error::new(Poison(format!("the entry has no {missing} field")));
                        outcomes_of_unparsed.push((h, Err(error)));
                    }
                }
            }
            let started = std::time::Instant::now();
            let outcomes = if deliveries.is_empty() {
                Vec::new()
            } else {
                self.handler.handle_many(group, &deliveries).await
            };
            debug_assert_eq!(outcomes.len(), deliveries.len(), "one outcome per entry");
            let mut settled: Vec<(Held, anyhow::Result<()>)> =
                parsed.into_iter().zip(outcomes).collect();
            settled.extend(outcomes_of_unparsed);
            self.settle(conn, group, settled, started.elapsed()).await?;
        }
        Ok(total)
    }

    /// Records the outcomes of entries handled together: counts and times them, acknowledges the ones
    /// that succeeded (one `XACK` per stream), dead-letters the ones that cannot succeed, and leaves the
    /// others pending for a retry.
    async fn settle(
        &self,
        conn: &mut BusConnection,
        group: Group,
        settled: Vec<(Held, anyhow::Result<()>)>,
        elapsed: Duration,
    ) -> anyhow::Result<()> {
        let mut done: Vec<(String, Vec<String>)> = Vec::new();
        let mut succeeded = false;
        let mut outage: Option<String> = None;
        let mut give_up = Vec::new();
        for (held, outcome) in settled {
            self.metrics.handled(group.name(), outcome.is_ok(), elapsed);
            match outcome {
                Ok(()) => {
                    succeeded = true;
                    match done.iter_mut().find(|(k, _)| *k == held.key) {
                        Some((_, acked)) => acked.push(held.id.id),
                        None => done.push((held.key, vec![held.id.id])),
                    }
                }
                Err(e) => {
                    let (record, dead) = self.failed(group, &held, &e);
                    if record.kind == Failure::Outage && outage.is_none() {
                        outage = Some(record.error.clone());
                    }
                    if dead {
                        give_up.push((held, record));
                    }
                }
            }
        }
        for (key, acked) in done {
            let _: i64 = redis::cmd("XACK")
                .arg(&key)
                .arg(group.name())
                .arg(&acked)
                .query_async(conn)
                .await?;
            let mut failures = lock(&self.failures);
            for id in acked {
                failures.remove(&id);
            }
        }
        for (held, record) in give_up {
            self.dead_letter(conn, group, &held, &record).await?;
            lock(&self.failures).remove(&held.id.id);
        }
        if succeeded {
            if lock(&self.outages).remove(&group).is_some() {
                tracing::info!(
                    group = group.name(),
                    "dependencies answer again; reading at full speed"
                );
            }
        } else if let Some(error) = outage {
            self.enter_outage(group, &error);
        }
        Ok(())
    }

    /// Records a failed entry and says whether to give up on it (dead-letter it) now.
    fn failed(&self, group: Group, held: &Held, error: &anyhow::Error) -> (FailureRecord, bool) {
        let kind = Failure::of(error);
        let message = format!("{error:#}");
        let mut failures = lock(&self.failures);
        let first_failed_at = failures
            .get(&held.id.id)
            .map_or_else(chrono::Utc::now, |f| f.first_failed_at);
        let record = FailureRecord {
            kind,
            error: message,
            first_failed_at,
        };
        failures.insert(held.id.id.clone(), record.clone());
        drop(failures);
        let too_old = entry_age(&held.id.id) > self.config.dead_letter_after;
        let dead = match kind {
            Failure::Permanent => true,
            Failure::Unknown => held.deliveries >= self.config.max_deliveries || too_old,
            Failure::Outage | Failure::Contended => too_old,
        };
        let in_outage = lock(&self.outages).contains_key(&group);
        if kind == Failure::Outage && in_outage && !dead {
            // One line when the outage starts (enter_outage), not one per entry while it lasts.
            tracing::debug!(group = group.name(), entry = %held.id.id, error = %record.error, "handling failed during an outage; will retry");
        } else if !dead {
            tracing::warn!(group = group.name(), entry = %held.id.id, failure = kind.name(), deliveries = held.deliveries, error = %record.error, "handling failed; will retry");
        }
        (record, dead)
    }

    fn enter_outage(&self, group: Group, error: &str) {
        let mut outages = lock(&self.outages);
        let failures = outages.get(&group).map_or(0, |o| o.failures) + 1;
        let wait = self.backoff(group.name(), failures as u64);
        if failures == 1 {
            tracing::warn!(
                group = group.name(),
                error,
                "a dependency is unavailable; reading no new entries until it answers"
            );
        }
        outages.insert(
            group,
            Outage {
                failures,
                next_probe: Instant::now() + wait.max(Duration::from_millis(50)),
            },
        );
    }

    /// The group's outage, if its dependencies are down.
    pub(crate) fn outage(&self, group: Group) -> Option<Outage> {
        lock(&self.outages).get(&group).copied()
    }

    /// Why this process's entry `id` last failed.
    pub(crate) fn failure(&self, id: &str) -> Option<FailureRecord> {
        lock(&self.failures).get(id).cloned()
    }

    /// The backoff before retry number `deliveries`: full jitter (uniform in 0..cap) with
    /// cap = min(retry_max, retry_base * 2^(deliveries - 1)), drawn from `seed` so it is stable
    /// across sweeps.
    pub(crate) fn backoff(&self, seed: &str, deliveries: u64) -> Duration {
        use std::hash::{Hash as _, Hasher as _};
        let exponent = u32::try_from(deliveries.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        let cap = self
            .config
            .retry_base
            .saturating_mul(1 << exponent)
            .min(self.config.retry_max);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (seed, deliveries).hash(&mut hasher);
        let fraction = (hasher.finish() % 10_000) as f64 / 10_000.0;
        cap.mul_f64(fraction)
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
}

/// Entries read at once (and handled together) per group.
pub(crate) const READ_COUNT: usize = 64;

/// Entries read or retried by a probe while a group waits out an outage.
pub(crate) const PROBE_COUNT: usize = 4;

/// How old a stream entry is, from the time in its id (`<ms>-<seq>`).
pub(crate) fn entry_age(id: &str) -> Duration {
    let millis: u64 = id
        .split_once('-')
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or(0);
    let now = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    Duration::from_millis(now.saturating_sub(millis))
}
