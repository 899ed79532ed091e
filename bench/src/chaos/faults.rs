//! The fault campaign: every kind once in a random order, then kinds at random until told to stop, each
//! after a random pause. Every fault undoes itself before the next starts (a killed process is started
//! again, the SMTP sink comes back, Redis is up), and each step goes on the timeline.
//!
//! | kind | what it does |
//! |---|---|
//! | kill relay leader | `kill -9` of the relay whose `relay_leader` gauge is 1; restarted 1-3 s later |
//! | kill worker | `kill -9` of a random worker; restarted 1-3 s later |
//! | kill api | `kill -9` of the API; restarted 1-3 s later on the same ports |
//! | pg_terminate_backend | every 10 s for `--pg-phase-secs`, the API's connections are terminated |
//! | SMTP down | the sink stops (listener and connections) for `--smtp-outage-secs` |
//! | Redis FLUSHALL | Redis emptied, then `bankctl outbox republish --since <run start>` |
//! | Redis restart, data kept | `SHUTDOWN SAVE` and start again from the snapshot |
//! | Redis restart, data lost | `SHUTDOWN NOSAVE`, snapshot removed, start empty, then republish |

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use rand::seq::SliceRandom as _;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{Mutex, MutexGuard};

use super::procs::{Cluster, Proc};
use super::settings::Args;
use super::smtp::SmtpSink;
use super::timeline::Timeline;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillRelayLeader,
    KillWorker,
    KillApi,
    PgTerminate,
    SmtpDown,
    RedisFlush,
    RedisRestartKeep,
    RedisRestartEmpty,
    /// On a Redis Cluster: `kill -9` of a master, its replica promoted, the node restarted later.
    RedisMasterKill,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::KillRelayLeader,
        Fault::KillWorker,
        Fault::KillApi,
        Fault::PgTerminate,
        Fault::SmtpDown,
        Fault::RedisFlush,
        Fault::RedisRestartKeep,
        Fault::RedisRestartEmpty,
    ];

    /// The kinds a run goes through: on a Redis Cluster the faults of a lone Redis (flush, restart)
    /// give way to killing a master, twice per round.
    pub fn kinds(redis_cluster: bool) -> Vec<Fault> {
        if !redis_cluster {
            return Fault::ALL.to_vec();
        }
        let mut kinds: Vec<Fault> = Fault::ALL
            .into_iter()
            .filter(|f| {
                !matches!(
                    f,
                    Fault::RedisFlush | Fault::RedisRestartKeep | Fault::RedisRestartEmpty
                )
            })
            .collect();
        kinds.extend([Fault::RedisMasterKill, Fault::RedisMasterKill]);
        kinds
    }
}

/// What the campaign needs.
#[derive(Debug)]
pub struct Campaign {
    pub cluster: Arc<Mutex<Cluster>>,
    pub sink: Arc<SmtpSink>,
    pub admin: sqlx::PgPool,
    pub http: reqwest::Client,
    pub timeline: Arc<Timeline>,
    pub args: Args,
    /// Set once every kind ran at least once.
    pub first_round_done: Arc<AtomicBool>,
    /// The campaign stops (after the fault in hand) when this is set.
    pub stop: Arc<AtomicBool>,
    /// Faults that could not be injected or undone (a process that would not start again, ...).
    pub errors: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Campaign {
    /// Runs faults until `stop`; returns how many ran.
    pub async fn run(self) -> anyhow::Result<usize> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(self.args.seed ^ 0x00fa_0175);
        let kinds = Fault::kinds(self.args.redis_cluster.is_some());
        let mut order = kinds.clone();
        order.shuffle(&mut rng);
        let mut done = 0;
        loop {
            let gap = rng.random_range(
                self.args.gap_min_secs..=self.args.gap_max_secs.max(self.args.gap_min_secs),
            );
            let pause = Duration::from_millis(gap * 1000 + rng.random_range(0..1000));
            if self.sleep_unless_stopped(pause).await {
                break;
            }
            let fault = if done < order.len() {
                order[done]
            } else {
                kinds[rng.random_range(0..kinds.len())]
            };
            let outage = Duration::from_millis(rng.random_range(1000..3000));
            if let Err(e) = self.inject(fault, outage, &mut rng).await {
                let what = format!("{fault:?}: {e:#}");
                self.timeline.log(format!("FAULT ERROR {what}"));
                self.errors
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(what);
            }
            done += 1;
            if done == order.len() {
                self.timeline.log("every fault kind has run once");
                self.first_round_done.store(true, Ordering::Relaxed);
            }
        }
        Ok(done)
    }

    /// Sleeps; true if told to stop meanwhile.
    async fn sleep_unless_stopped(&self, pause: Duration) -> bool {
        let until = tokio::time::Instant::now() + pause;
        while tokio::time::Instant::now() < until {
            if self.stop.load(Ordering::Relaxed) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.load(Ordering::Relaxed)
    }

    async fn inject(
        &self,
        fault: Fault,
        outage: Duration,
        rng: &mut rand::rngs::StdRng,
    ) -> anyhow::Result<()> {
        let log = |s: String| self.timeline.log(s);
        match fault {
            Fault::KillRelayLeader => {
                let cluster = self.cluster.lock().await;
                let (i, how) = match cluster.relay_leader(&self.http).await {
                    Some(i) => (i, ", the leader"),
                    None => (
                        rng.random_range(0..cluster.relays.len()),
                        ", no leader found: a random one",
                    ),
                };
                self.kill_and_restart(cluster, |c| &mut c.relays[i], how, outage)
                    .await?;
            }
            Fault::KillWorker => {
                let cluster = self.cluster.lock().await;
                let i = rng.random_range(0..cluster.workers.len());
                self.kill_and_restart(cluster, |c| &mut c.workers[i], "", outage)
                    .await?;
            }
            Fault::KillApi => {
                let cluster = self.cluster.lock().await;
                self.kill_and_restart(cluster, |c| &mut c.api, "", outage)
                    .await?;
            }
            Fault::PgTerminate => {
                log(format!(
                    "FAULT pg_terminate_backend of the api's connections every 10 s for {} s",
                    self.args.pg_phase_secs
                ));
                let phase_end = tokio::time::Instant::now() + self.args.pg_phase();
                loop {
                    let killed: Vec<(bool,)> = sqlx::query_as(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                         WHERE datname = current_database() AND application_name = 'chaos-api'",
                    )
                    .fetch_all(&self.admin)
                    .await?;
                    log(format!(
                        "  pg_terminate_backend: {} api connection(s)",
                        killed.len()
                    ));
                    if tokio::time::Instant::now() + Duration::from_secs(10) > phase_end
                        || self.sleep_unless_stopped(Duration::from_secs(10)).await
                    {
                        break;
                    }
                }
                log("  pg_terminate_backend phase over".into());
            }
            Fault::SmtpDown => {
                log(format!(
                    "FAULT SMTP sink down for {} s",
                    self.args.smtp_outage_secs
                ));
                self.sink.stop().await;
                tokio::time::sleep(self.args.smtp_outage()).await;
                self.sink.start()?;
                log("  SMTP sink up".into());
            }
            Fault::RedisFlush => {
                let url = self.cluster.lock().await.redis_url.clone();
                let client = redis::Client::open(url.as_str())?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                redis::cmd("FLUSHALL").query_async::<()>(&mut conn).await?;
                log("FAULT Redis FLUSHALL".into());
                tokio::time::sleep(outage).await;
                self.republish().await?;
            }
            Fault::RedisMasterKill => {
                let master = rng.random_range(1..=3).to_string();
                let killed = engines(&["redis-cluster", "kill-master", &master]).await?;
                log(format!("FAULT kill -9 of Redis master {master}: {killed}"));
                let port = killed
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("killed="))
                    .context("kill-master printed no killed=PORT")?
                    .to_owned();
                tokio::time::sleep(outage).await;
                engines(&["redis-cluster", "restart-node", &port]).await?;
                engines(&["redis-cluster", "wait-ok", "30"]).await?;
                log(format!("  Redis node {port} back, as a replica"));
            }
            Fault::RedisRestartKeep | Fault::RedisRestartEmpty => {
                let keep = fault == Fault::RedisRestartKeep;
                let mut cluster = self.cluster.lock().await;
                log(format!(
                    "FAULT Redis restart {} its data (SHUTDOWN {})",
                    if keep { "with" } else { "without" },
                    if keep {
                        "SAVE"
                    } else {
                        "NOSAVE, snapshot removed"
                    }
                ));
                cluster.stop_redis(keep).await?;
                drop(cluster);
                tokio::time::sleep(outage).await;
                self.cluster.lock().await.start_redis().await?;
                log("  Redis up".into());
                if !keep {
                    self.republish().await?;
                }
            }
        }
        Ok(())
    }

    /// `kill -9` of the process `pick` chooses in the locked `cluster` (`how` it was chosen goes in the
    /// log line); it is started again after `outage`.
    async fn kill_and_restart(
        &self,
        mut cluster: MutexGuard<'_, Cluster>,
        pick: impl Fn(&mut Cluster) -> &mut Proc,
        how: &str,
        outage: Duration,
    ) -> anyhow::Result<()> {
        let proc = pick(&mut cluster);
        self.timeline.log(format!(
            "FAULT kill -9 {} (pid {:?}{how})",
            proc.name,
            proc.pid()
        ));
        proc.kill9().await;
        drop(cluster);
        tokio::time::sleep(outage).await;
        self.restart(pick).await
    }

    async fn restart(&self, pick: impl Fn(&mut Cluster) -> &mut Proc) -> anyhow::Result<()> {
        let mut cluster = self.cluster.lock().await;
        let proc = pick(&mut cluster);
        proc.start()?;
        let name = proc.name.clone();
        proc.wait_healthy(&self.http, Duration::from_secs(60))
            .await?;
        self.timeline.log(format!(
            "  {name} restarted (pid {:?})",
            pick(&mut cluster).pid()
        ));
        Ok(())
    }

    async fn republish(&self) -> anyhow::Result<()> {
        let window = self.args.republish_window_secs;
        let since = if window == 0 {
            self.timeline.started_at
        } else {
            (chrono::Utc::now() - chrono::Duration::seconds(i64::try_from(window)?))
                .max(self.timeline.started_at)
        }
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let cluster = self.cluster.lock().await;
        let out = cluster
            .bankctl(&["outbox", "republish", "--since", &since], &[])
            .await?;
        self.timeline
            .log(format!("  bankctl outbox republish --since {since}: {out}"));
        Ok(())
    }
}

/// `scripts/engines.sh <args>`; its standard output.
async fn engines(args: &[&str]) -> anyhow::Result<String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/engines.sh");
    let out = tokio::process::Command::new(script)
        .args(args)
        .output()
        .await
        .context("scripts/engines.sh")?;
    anyhow::ensure!(
        out.status.success(),
        "scripts/engines.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
