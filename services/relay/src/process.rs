//! A relay process: it joins the relays that are up, leads its share of the partitions
//! ([`crate::partitions`]), and runs one publishing task per partition it leads, woken by the
//! `NOTIFY outbox` of committing writers or by a fallback poll.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgListener};
use streambank_bus::{Bus, BusConnection};
use streambank_config::partition_prefix;
use streambank_store::relay::{self, Partition};
use streambank_telemetry::health::Readiness;
use streambank_telemetry::shutdown::{CancellationToken, stop_token};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::partitions::{self, Membership};
use crate::publish::{Lane, drain_lane};
use crate::{Config, RelayMetrics, connect_options};

/// While a partition published within this long, its task polls every [`BUSY_POLL`] instead of
/// waiting for a NOTIFY, and writers skip the NOTIFY.
const BUSY_FOR: Duration = Duration::from_secs(1);
const BUSY_POLL: Duration = Duration::from_millis(1);
/// How often a relay counts the relays that are up, takes or gives back partitions, and checks that
/// the connection holding its locks is still there (a relay that lost it stops publishing within
/// this long, and a free partition is taken within this long).
pub const REBALANCE_EVERY: Duration = Duration::from_millis(500);
/// How often the leader of partition 0 deletes published rows past retention.
const RETENTION_EVERY: Duration = Duration::from_secs(60);

/// A relay process.
#[derive(Debug, Clone)]
pub struct Relay {
    config: Config,
    pool: PgPool,
    bus: Bus,
    led: Arc<Mutex<BTreeSet<u16>>>,
    metrics: RelayMetrics,
}

/// A publishing task of one partition, and how to stop it.
type Task = (CancellationToken, Owned<anyhow::Result<()>>);

/// A task aborted when dropped: when `lead` ends, or is dropped itself, nothing it started publishes on.
#[derive(Debug)]
struct Owned<T>(JoinHandle<T>);

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Relay {
    pub fn new(config: Config) -> anyhow::Result<Self> {
        // Each partition's task holds up to two connections (a batch on its way, the next claim).
        let connections = (2 * u32::from(config.streams.partitions) + 2).clamp(4, 64);
        let pool = streambank_store::pool_options(connections)
            .connect_lazy_with(connect_options(&config.database.url).context("DATABASE_URL")?);
        let bus = Bus::open(&config.redis.url).context("REDIS_URL is not a Redis URL")?;
        anyhow::ensure!(
            !bus.is_cluster() || config.streams.partitions > 1,
            "REDIS_URL names a Redis Cluster: STREAM_PARTITIONS must be 2 or more, so that each \
             partition's streams share a hash tag (a slot)"
        );
        Ok(Self {
            config,
            pool,
            bus,
            led: Arc::default(),
            metrics: RelayMetrics::default(),
        })
    }

    /// The relay's metrics, as `/metrics` serves them.
    pub fn metrics(&self) -> &RelayMetrics {
        &self.metrics
    }

    /// Whether this process currently leads a partition and publishes.
    pub fn is_leader(&self) -> bool {
        !self.partitions().is_empty()
    }

    /// The partitions this process leads now.
    pub fn partitions(&self) -> Vec<u16> {
        lock(&self.led).iter().copied().collect()
    }

    fn set_led(&self, led: impl IntoIterator<Item = u16>) {
        let mut current = lock(&self.led);
        *current = led.into_iter().collect();
        self.metrics.leading(current.len());
    }

    /// Serves health, then leads its share of the partitions until `shutdown` completes. A batch in
    /// flight when shutdown arrives is finished first.
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
            if let Err(e) = self.lead(&stop).await {
                self.set_led([]);
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
        self.set_led([]);
        let _ = health.await;
        tracing::info!("relay stopped");
        Ok(())
    }

    async fn readiness(&self) -> Result<serde_json::Value, serde_json::Value> {
        let partitions = self.partitions();
        let role = if partitions.is_empty() {
            "standby"
        } else {
            "leader"
        };
        Readiness::default()
            .check("postgres", sqlx::query("SELECT 1").execute(&self.pool))
            .await
            .check("redis", self.bus.ping())
            .await
            .detail("role", role)
            .detail("partitions", partitions)
            .report()
    }

    /// Joins the relays, then keeps its share of the partitions led until shutdown, or until its lock
    /// connection or a partition's publishing fails (then every partition is given back).
    async fn lead(&self, stop: &CancellationToken) -> anyhow::Result<()> {
        let options: PgConnectOptions = self.config.database.url.parse()?;
        let mut membership = Membership::join(&options)
            .await
            .context("cannot connect to Postgres")?;
        let (wake, listener) = self.listen(stop).await?;
        let mut tasks: BTreeMap<Partition, Task> = BTreeMap::new();
        let result = loop {
            if let Some(failed) = reap(&mut tasks).await {
                break failed;
            }
            if listener.0.is_finished() {
                break Err(anyhow::anyhow!("the LISTEN outbox connection was lost"));
            }
            if let Err(e) = self.rebalance(&mut membership, &mut tasks, &wake).await {
                break Err(e);
            }
            tokio::select! {
                () = stop.cancelled() => break Ok(()),
                () = tokio::time::sleep(REBALANCE_EVERY) => {}
            }
        };
        drop(listener);
        for (_, (token, mut task)) in std::mem::take(&mut tasks) {
            token.cancel();
            let _ = (&mut task.0).await;
        }
        self.set_led([]);
        membership.leave().await;
        result
    }

    /// Gives back partitions above this relay's share, and takes free ones up to it.
    async fn rebalance(
        &self,
        membership: &mut Membership,
        tasks: &mut BTreeMap<Partition, Task>,
        wake: &watch::Receiver<u64>,
    ) -> anyhow::Result<()> {
        let count = self.config.streams.partitions;
        let members = membership.members().await?;
        let share = partitions::share(count, members);
        while membership.held().len() > share {
            let Some(&partition) = membership.held().iter().next_back() else {
                break;
            };
            if let Some((token, mut task)) = tasks.remove(&partition) {
                token.cancel();
                (&mut task.0).await??;
            }
            membership.release(partition).await?;
            tracing::info!(
                partition = partition.index,
                members,
                share,
                "gave a partition back"
            );
        }
        // Start from an offset of the member slot, so that relays starting together try different
        // partitions first.
        let offset = u16::try_from(membership.slot()).unwrap_or(0);
        for i in 0..count {
            if membership.held().len() >= share {
                break;
            }
            let partition = Partition {
                index: offset.wrapping_add(i) % count,
                count,
            };
            if membership.held().contains(&partition) || !membership.try_take(partition).await? {
                continue;
            }
            tracing::info!(
                partition = partition.index,
                members,
                share,
                "relay leads a partition"
            );
            let token = CancellationToken::new();
            let task = self.clone().publish(partition, wake.clone(), token.clone());
            tasks.insert(partition, (token, Owned(tokio::spawn(task))));
        }
        self.set_led(membership.held().iter().map(|p| p.index));
        Ok(())
    }

    /// One `LISTEN outbox` connection for the whole process: every notification bumps the counter the
    /// partitions' tasks watch.
    async fn listen(
        &self,
        stop: &CancellationToken,
    ) -> anyhow::Result<(watch::Receiver<u64>, Owned<()>)> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen("outbox").await?;
        let (bump, wake) = watch::channel(0_u64);
        let stop = stop.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    notification = listener.recv() => match notification {
                        Ok(_) => bump.send_modify(|n| *n = n.wrapping_add(1)),
                        Err(e) => {
                            tracing::warn!(error = %e, "the LISTEN outbox connection failed");
                            return;
                        }
                    },
                }
            }
        });
        Ok((wake, Owned(task)))
    }

    /// Publishes `partition` until `stop`: drains it while rows come, polls every [`BUSY_POLL`] while
    /// busy, and when idle asks writers to notify and waits for a wake-up or the fallback poll.
    async fn publish(
        self,
        partition: Partition,
        mut wake: watch::Receiver<u64>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut redis = self
            .bus
            .connect()
            .await
            .context("cannot connect to Redis")?;
        let lane = Lane {
            partition,
            prefix: partition_prefix(
                &self.config.streams.prefix,
                partition.count,
                partition.index,
            ),
            batch_size: self.config.batch_size,
            max_stream_len: self.config.max_stream_len,
            min_replicas: self.config.min_replicas,
            wait_timeout: self.config.wait_timeout,
        };
        let mut last_retention = tokio::time::Instant::now() - RETENTION_EVERY;
        let mut last_published = tokio::time::Instant::now();
        loop {
            let found = self.drain(&mut redis, &lane, &stop).await? > 0;
            if found {
                last_published = tokio::time::Instant::now();
            }
            if stop.is_cancelled() {
                break;
            }
            if partition.index == 0 && last_retention.elapsed() > RETENTION_EVERY {
                self.expire_published().await?;
                last_retention = tokio::time::Instant::now();
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
            // Idle: ask writers to notify, look once more (a commit that saw "busy" just before this
            // must not wait for the fallback poll), then wait for a notification.
            relay::set_listening_in(&self.pool, partition, true).await?;
            wake.borrow_and_update();
            if self.drain(&mut redis, &lane, &stop).await? == 0 {
                tokio::select! {
                    () = stop.cancelled() => {}
                    _ = wake.changed() => {}
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            }
            relay::set_listening_in(&self.pool, partition, false).await?;
            last_published = tokio::time::Instant::now();
        }
        // Whoever leads this partition next is woken by writers until it sets its own state.
        relay::set_listening_in(&self.pool, partition, true)
            .await
            .ok();
        Ok(())
    }

    /// Publishes batches until one comes back short. Returns how many rows were published.
    async fn drain(
        &self,
        redis: &mut BusConnection,
        lane: &Lane,
        stop: &CancellationToken,
    ) -> anyhow::Result<usize> {
        drain_lane(&self.pool, redis, lane, Some(&self.metrics), || {
            stop.is_cancelled()
        })
        .await
    }

    /// Deletes published rows past `OUTBOX_RETENTION`.
    async fn expire_published(&self) -> anyhow::Result<()> {
        let before = chrono::Utc::now() - chrono::Duration::from_std(self.config.retention)?;
        let deleted = relay::delete_published_before(&self.pool, before).await?;
        if deleted > 0 {
            tracing::info!(deleted, "deleted published outbox rows past retention");
        }
        Ok(())
    }
}

/// Collects the partition tasks that have ended: the first failure, if any.
async fn reap(tasks: &mut BTreeMap<Partition, Task>) -> Option<anyhow::Result<()>> {
    let ended: Vec<Partition> = tasks
        .iter()
        .filter(|(_, (_, task))| task.0.is_finished())
        .map(|(partition, _)| *partition)
        .collect();
    for partition in ended {
        let (_, mut task) = tasks.remove(&partition)?;
        match (&mut task.0).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Some(Err(
                    e.context(format!("publishing partition {}", partition.index))
                ));
            }
            Err(e) => return Some(Err(anyhow::Error::new(e))),
        }
    }
    None
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}
