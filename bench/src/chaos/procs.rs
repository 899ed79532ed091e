//! The processes under test and their ports: a private `redis-server`, one `streambank-api`, two
//! `streambank-relay`, two `streambank-worker`. Each runs as a child of the harness with its output
//! appended to `<work dir>/logs/<name>.log`; a fault kills one with SIGKILL and starts it again later on
//! the same ports. Children are killed when the [`Cluster`] is dropped (`kill_on_drop`), and
//! `run-chaos.sh` also kills the harness's whole process group on exit, so nothing outlives a run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context as _;
use tokio::process::{Child, Command};

use super::settings::{API_ENV, Args, COMMON_ENV, RELAY_ENV, WORKER_ENV};

/// A loopback port nobody listens on now, outside the range outgoing connections take theirs from.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(streambank_testkit::process::free_port())
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One child process, which can be killed and started again with the same command.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Where its `/healthz` answers (none for Redis).
    pub health: Option<SocketAddr>,
}

impl Proc {
    fn new(name: &str, program: PathBuf, log_dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            program,
            args: Vec::new(),
            env: Vec::new(),
            log: log_dir.join(format!("{name}.log")),
            child: None,
            health: None,
        }
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.program.display()))?;
        self.child = Some(child);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// `kill -9`, and waits for it to be gone.
    pub async fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            let _ = child.wait().await;
        }
    }

    /// Waits up to `limit` for the process to exit on its own (Redis after `SHUTDOWN`); kills it after.
    pub async fn wait_exit(&mut self, limit: Duration) {
        if let Some(child) = self.child.as_mut()
            && tokio::time::timeout(limit, child.wait()).await.is_ok()
        {
            self.child = None;
            return;
        }
        self.kill9().await;
    }

    /// If the process exited although nobody killed it: its exit status (and it is forgotten).
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Waits until `/healthz` answers 200. Fails when `limit` passes or the process exits first, with
    /// the end of its log in the error: CI keeps the output, not the work dir.
    pub async fn wait_healthy(
        &mut self,
        http: &reqwest::Client,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let Some(health) = self.health else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let ok = http
                .get(format!("http://{health}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return Ok(());
            }
            if let Some(status) = self.exited() {
                anyhow::bail!(
                    "{} exited before it was healthy ({status}); the end of {}:\n{}",
                    self.name,
                    self.log.display(),
                    self.log_tail(40)
                );
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "{} did not become healthy within {limit:?}; the end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The last `lines` lines of the process's log.
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// The ports of the API's three listeners.
#[derive(Debug, Clone, Copy)]
pub struct ApiAddrs {
    pub rest: SocketAddr,
    pub grpc: SocketAddr,
    pub gateway: SocketAddr,
}

/// Partitions per stream when the run is on a Redis Cluster.
pub const CLUSTER_PARTITIONS: u16 = 8;

/// Everything the harness started.
#[derive(Debug)]
pub struct Cluster {
    pub redis: Proc,
    pub redis_url: String,
    /// Whether `redis_url` names a Redis Cluster the harness did not start (`--redis-cluster`).
    pub redis_cluster: bool,
    /// `STREAM_PARTITIONS` of the relays and workers: 1, or [`CLUSTER_PARTITIONS`] on a cluster.
    pub partitions: u16,
    pub redis_dir: PathBuf,
    pub api: Proc,
    pub api_addrs: ApiAddrs,
    pub relays: Vec<Proc>,
    pub workers: Vec<Proc>,
    /// The database URL without an application name (for the harness and bankctl).
    pub database_url: String,
    pub prefix: String,
    pub bin_dir: PathBuf,
}

impl Cluster {
    /// Lays out the processes (nothing is started yet). `smtp` is the sink's address.
    pub fn new(
        args: &Args,
        work_dir: &Path,
        database_url: &str,
        smtp: SocketAddr,
    ) -> anyhow::Result<Self> {
        let logs = work_dir.join("logs");
        let redis_dir = work_dir.join("redis");
        std::fs::create_dir_all(&logs)?;
        std::fs::create_dir_all(&redis_dir)?;
        let bin_dir = args.bin_dir();
        // A Redis of the harness's own starts empty; a Redis Cluster outlives the run, so each run
        // gets keys of its own there (a stream left by an earlier run of the same seed would hand its
        // old entries, with their old verification codes, to this run's workers).
        let prefix = if args.redis_cluster.is_some() {
            format!("chaos{}-{}", args.seed, std::process::id())
        } else {
            format!("chaos{}", args.seed)
        };

        let redis_port = free_port()?;
        let redis_url = args
            .redis_cluster
            .clone()
            .unwrap_or_else(|| format!("redis://127.0.0.1:{redis_port}"));
        let partitions = if args.redis_cluster.is_some() {
            CLUSTER_PARTITIONS
        } else {
            1
        };
        let mut redis = Proc::new("redis", PathBuf::from("redis-server"), &logs);
        redis.args = [
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--dir",
            &redis_dir.display().to_string(),
            "--dbfilename",
            "dump.rdb",
            // No periodic snapshots: the harness decides when data survives a restart (SHUTDOWN SAVE).
            "--save",
            "",
            "--appendonly",
            "no",
            "--logfile",
            &logs.join("redis-server.log").display().to_string(),
        ]
        .map(str::to_owned)
        .to_vec();

        let with_app = |name: &str| {
            let sep = if database_url.contains('?') { '&' } else { '?' };
            format!("{database_url}{sep}application_name={name}")
        };
        let base_env = |name: &str| -> Vec<(String, String)> {
            let mut env: Vec<(String, String)> = COMMON_ENV
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            env.push(("DATABASE_URL".into(), with_app(name)));
            env.push(("REDIS_URL".into(), redis_url.clone()));
            env.push(("STREAM_PREFIX".into(), prefix.clone()));
            if partitions > 1 {
                env.push(("STREAM_PARTITIONS".into(), partitions.to_string()));
                env.push(("RELAY_MIN_REPLICAS".into(), "1".into()));
            }
            env
        };
        let finish = |env: &mut Vec<(String, String)>, table: &[(&str, &str)]| {
            env.extend(
                table
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            );
            env.extend(args.extra_env.iter().cloned());
        };

        let api_addrs = ApiAddrs {
            rest: addr(free_port()?),
            grpc: addr(free_port()?),
            gateway: addr(free_port()?),
        };
        let mut api = Proc::new("api", bin_dir.join("streambank-api"), &logs);
        api.env = base_env("chaos-api");
        api.env.extend([
            ("HTTP_ADDR".into(), api_addrs.rest.to_string()),
            ("GRPC_ADDR".into(), api_addrs.grpc.to_string()),
            ("GATEWAY_ADDR".into(), api_addrs.gateway.to_string()),
            // Its own metrics port too: the default 9100 may be taken (a `scripts/dev.sh` running).
            ("METRICS_ADDR".into(), addr(free_port()?).to_string()),
            (
                "GATEWAY_UPSTREAM".into(),
                format!("http://{}", api_addrs.grpc),
            ),
        ]);
        finish(&mut api.env, API_ENV);
        api.health = Some(api_addrs.rest);

        // `streambank-{kind}` number `i`, with a health listener of its own and `env` after the
        // common variables.
        let with_health =
            |kind: &str, i: usize, env: &[(String, String)], table: &[(&str, &str)]| {
                let name = format!("{kind}-{i}");
                let mut proc = Proc::new(&name, bin_dir.join(format!("streambank-{kind}")), &logs);
                let health = addr(free_port()?);
                proc.env = base_env(&format!("chaos-{name}"));
                proc.env.push(("HEALTH_ADDR".into(), health.to_string()));
                proc.env.extend(env.iter().cloned());
                finish(&mut proc.env, table);
                proc.health = Some(health);
                anyhow::Ok(proc)
            };
        let relays = (1..=2)
            .map(|i| with_health("relay", i, &[], RELAY_ENV))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let worker_env = [
            ("SMTP_URL".into(), format!("smtp://{smtp}")),
            (
                "PUBLIC_BASE_URL".into(),
                format!("http://{}", api_addrs.rest),
            ),
        ];
        let workers = (1..=2)
            .map(|i| with_health("worker", i, &worker_env, WORKER_ENV))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            redis,
            redis_cluster: args.redis_cluster.is_some(),
            partitions,
            redis_url,
            redis_dir,
            api,
            api_addrs,
            relays,
            workers,
            database_url: database_url.to_owned(),
            prefix,
            bin_dir,
        })
    }

    /// Starts Redis and waits until it answers `PING`.
    pub async fn start_redis(&mut self) -> anyhow::Result<()> {
        if self.redis_cluster {
            // Not ours to start: it must answer already.
            return streambank_bus::Bus::open(&self.redis_url)?
                .ping()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "no Redis Cluster at {} ({e}); start one with `scripts/engines.sh redis-cluster start`",
                        self.redis_url
                    )
                });
        }
        self.redis.start()?;
        let client = redis::Client::open(self.redis_url.as_str())?;
        for _ in 0..100 {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("redis-server did not answer PING within 10 s (see the logs)")
    }

    /// Stops Redis with `SHUTDOWN SAVE` (its data survive) or `SHUTDOWN NOSAVE` plus removing its
    /// snapshot (they do not).
    pub async fn stop_redis(&mut self, keep_data: bool) -> anyhow::Result<()> {
        let client = redis::Client::open(self.redis_url.as_str())?;
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
            // The server closes the connection instead of answering.
            let _ = redis::cmd("SHUTDOWN")
                .arg(if keep_data { "SAVE" } else { "NOSAVE" })
                .query_async::<()>(&mut conn)
                .await;
        }
        self.redis.wait_exit(Duration::from_secs(15)).await;
        if !keep_data {
            let _ = std::fs::remove_file(self.redis_dir.join("dump.rdb"));
        }
        Ok(())
    }

    /// The application processes (not Redis), mutably.
    pub fn apps_mut(&mut self) -> impl Iterator<Item = &mut Proc> {
        std::iter::once(&mut self.api)
            .chain(self.relays.iter_mut())
            .chain(self.workers.iter_mut())
    }

    /// Starts every application process that is not running, and waits until each is healthy.
    pub async fn start_apps(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        for proc in self.apps_mut() {
            if !proc.is_running() {
                proc.start()?;
            }
        }
        for proc in self.apps_mut() {
            proc.wait_healthy(http, Duration::from_secs(60)).await?;
        }
        Ok(())
    }

    /// `bankctl <args>` against this cluster's database and Redis; its one line of output.
    pub async fn bankctl(&self, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<String> {
        let output = Command::new(self.bin_dir.join("bankctl"))
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("REDIS_URL", &self.redis_url)
            .env("STREAM_PREFIX", &self.prefix)
            .envs(env.iter().copied())
            .output()
            .await
            .context("running bankctl")?;
        let out = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let err = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        anyhow::ensure!(
            output.status.success(),
            "bankctl {} failed: {out} {err}",
            args.first().unwrap_or(&"")
        );
        Ok(out)
    }

    /// The relay that holds the leadership now (its `relay_leader` gauge is 1), if any answers.
    pub async fn relay_leader(&self, http: &reqwest::Client) -> Option<usize> {
        for (i, relay) in self.relays.iter().enumerate() {
            let Some(health) = relay.health else { continue };
            let Ok(response) = http.get(format!("http://{health}/metrics")).send().await else {
                continue;
            };
            let Ok(text) = response.text().await else {
                continue;
            };
            let leader = text.lines().any(|line| {
                line.starts_with("relay_leader")
                    && line
                        .split_whitespace()
                        .last()
                        .and_then(|v| v.parse::<f64>().ok())
                        == Some(1.0)
            });
            if leader {
                return Some(i);
            }
        }
        None
    }

    /// Kills every process (also what `Drop` does, but this waits for them).
    pub async fn stop_all(&mut self) {
        for proc in self.apps_mut() {
            proc.kill9().await;
        }
        self.redis.kill9().await;
    }
}
