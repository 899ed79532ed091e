//! Running a worker: one loop per lane (all of a group's keys on a lone Redis, one partition's on a
//! Redis Cluster), each alternating a blocking `XREADGROUP` with a sweep of the pending entries of
//! its own keys; and while a group's dependencies are down, probes instead of reads.
//!
//! A lane sweeps only its own keys, between two reads: an entry this process is handling is pending
//! under its own name, and a sweep of another lane's keys would take it for a failed entry and
//! handle it a second time, at once (on a Redis Cluster, where a group has a lane per partition).

use std::future::Future;
use std::time::Duration;

use streambank_telemetry::health::Readiness;
use streambank_telemetry::shutdown::{CancellationToken, stop_token};
use tokio::time::Instant;

use crate::consumer::{PROBE_COUNT, READ_COUNT, Worker, lock};
use crate::group::Group;

impl Worker {
    /// Runs every group until `shutdown` completes; in-flight entries are finished and acknowledged first.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = stop_token(shutdown);
        tracing::info!(consumer = %self.consumer, "worker starting");
        let (_, health) = streambank_telemetry::health::serve(
            self.config.health_addr,
            self.clone(),
            |worker| async move { worker.readiness().await },
            self.metrics.registry.clone(),
            &stop,
        )
        .await?;

        let mut tasks = tokio::task::JoinSet::new();
        for group in Group::ALL {
            for keys in self.lanes(group) {
                let worker = self.clone();
                let stop = stop.clone();
                tasks.spawn(async move { worker.run_lane(group, keys, stop).await });
            }
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

    /// Reads `keys` for `group` until `stop`, sweeping their pending entries in between.
    async fn run_lane(
        &self,
        group: Group,
        keys: Vec<String>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        let block = Duration::from_millis(1000);
        let mut failures_in_a_row = 0u64;
        while !stop.is_cancelled() {
            let session = async {
                let mut conn = self.connection().await?;
                self.ensure_groups(&mut conn).await?;
                // The blocking read gets a connection of its own, without a response timeout.
                let mut blocking = self.bus.connect_blocking().await?;
                let mut last_sweep = Instant::now();
                while !stop.is_cancelled() {
                    match self.outage(group) {
                        Some(outage) if outage.next_probe > Instant::now() => {
                            // Waiting out an outage: no new reads; stay known as alive.
                            let nap =
                                (outage.next_probe - Instant::now()).min(Duration::from_secs(1));
                            tokio::select! {
                                () = tokio::time::sleep(nap) => {}
                                () = stop.cancelled() => {}
                            }
                            self.touch(&mut conn, group, &keys).await?;
                            continue;
                        }
                        Some(_) => {
                            // Probe: retry a few of the failed entries; if there are none, read a few.
                            let retried = self.sweep_keys(&mut conn, group, &keys).await?;
                            if retried == 0 {
                                self.read(
                                    &mut blocking,
                                    &mut conn,
                                    group,
                                    &keys,
                                    None,
                                    PROBE_COUNT,
                                )
                                .await?;
                            }
                            if self
                                .outage(group)
                                .is_some_and(|o| o.next_probe <= Instant::now())
                            {
                                // Nothing to probe with: the dependencies may be back.
                                lock(&self.outages).remove(&group);
                            }
                            last_sweep = Instant::now();
                            continue;
                        }
                        None => {}
                    }
                    self.read(
                        &mut blocking,
                        &mut conn,
                        group,
                        &keys,
                        Some(block),
                        READ_COUNT,
                    )
                    .await?;
                    failures_in_a_row = 0;
                    if last_sweep.elapsed() >= self.config.sweep_interval {
                        self.sweep_keys(&mut conn, group, &keys).await?;
                        last_sweep = Instant::now();
                    }
                }
                anyhow::Ok(())
            };
            if let Err(e) = session.await {
                failures_in_a_row += 1;
                let wait = self
                    .backoff(group.name(), failures_in_a_row)
                    .max(Duration::from_millis(200));
                tracing::warn!(
                    group = group.name(),
                    error = format!("{e:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "consumer loop failed (Redis or Postgres unreachable?); retrying"
                );
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        Ok(())
    }

    async fn readiness(&self) -> Result<serde_json::Value, serde_json::Value> {
        Readiness::default()
            .check("redis", self.bus.ping())
            .await
            .detail("consumer", self.consumer.as_str())
            .report()
    }
}
