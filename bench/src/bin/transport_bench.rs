//! REST, gRPC and the HTTP/JSON gateway side by side, in one run.
//!
//! It starts `streambank-api` in the process on a fresh database (as `api-bench` does), logs in one
//! customer per concurrent caller, and drives the same two operations through each of the three
//! listeners, with the service layer called directly as the reference:
//!
//! - `GET /v1/accounts/{id}` (REST and gateway) against `AccountService/GetAccount` (gRPC) and
//!   `Bank::get_account`;
//! - `POST /v1/transfers` (REST and gateway) against `TransferService/CreateTransfer` (gRPC) and
//!   `Bank::transfer`, each a transfer of one minor unit out of the caller's own account to a random
//!   other account;
//! - and, to see the transport alone, a health check (REST `/healthz`, gRPC `grpc.health.v1.Health/
//!   Check`): no authentication, no database, the same layers (`--no-health` skips it).
//!
//! REST and the gateway get one HTTP/1.1 keep-alive connection per caller (reqwest); gRPC callers share a
//! few HTTP/2 channels (`--grpc-channels`), because one HTTP/2 connection multiplexes many calls. Each
//! run measures every (operation, transport) pair for `--seconds`, transports interleaved and their order
//! rotated from run to run, so drift hits them alike; throughput is the median over the runs, latency
//! percentiles are over every call of every run.
//!
//! The API runs on a runtime like its own binary's (a worker per core) and the load generator on a
//! second runtime with threads of its own (`--load-threads`), as a separate client process would; so
//! the CPU time each used can be read apart from `/proc`, next to that of the Postgres backends of the
//! benchmark database and of everything else on the machine. That, and the count of connections the
//! HTTP clients opened, is there so that a shortfall can be traced to where the time goes.
//!
//! Then it counts the bytes each call puts on the wire: `--wire-calls` sequential calls per pair through
//! an in-process TCP proxy that counts what it copies in each direction, after a few warm-up calls on
//! the same connection (so the figures are per call on a warm connection: HTTP/1.1 headers, HTTP/2
//! frames and HPACK as they really are, not estimates).
//!
//! It prints Markdown tables and writes an SVG chart (`--chart`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rand::Rng as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use streambank_api::{Api, Config};
use streambank_bench::ledger::{prepare_database, warm_up};
use streambank_bench::stats::{median, percentile};
use streambank_proto::v1 as pb;
use streambank_proto::v1::account_service_client::AccountServiceClient;
use streambank_proto::v1::transfer_service_client::TransferServiceClient;
use streambank_service::{Bank, Caller, Role, TransferRequest};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Parser)]
#[command(about = "REST, gRPC and the gateway: throughput, latency and bytes per call, in one run")]
struct Args {
    /// The benchmark database; it is dropped and created again.
    #[arg(
        long,
        env = "BENCH_TRANSPORTS_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streambank_bench_transports"
    )]
    database_url: String,
    #[arg(long, default_value_t = 1_000)]
    accounts: i64,
    /// Concurrent callers (one logged-in customer each; one HTTP/1.1 connection each for REST and the
    /// gateway).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// HTTP/2 connections the gRPC callers share (round robin).
    #[arg(long, default_value_t = 4)]
    grpc_channels: usize,
    /// The transports to measure, comma-separated (service, rest, grpc, gateway); all by default.
    #[arg(long, value_delimiter = ',', default_values_t = Transport::ALL.map(|t| t.flag()))]
    transports: Vec<String>,
    /// Skip the health-check measurement (the transport alone, no authentication, no database).
    #[arg(long)]
    no_health: bool,
    /// Worker threads of the load generator's runtime (the API's runtime has one per core).
    #[arg(long, default_value_t = 2)]
    load_threads: usize,
    /// Seconds per (operation, transport) measurement in each run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Sequential calls per (operation, transport) through the byte-counting proxy.
    #[arg(long, default_value_t = 1_000)]
    wire_calls: u64,
    /// Where to write the SVG chart.
    #[arg(long, default_value = "docs/benchmarks/transports.svg")]
    chart: std::path::PathBuf,
}

const PASSWORD: &str = "benchmark password";
const KEY: &str = "bench-key-0123456789-abcdefghijk";
/// Calls on a fresh connection before the byte counters are read, so connection set-up (TCP, the
/// HTTP/2 preface and SETTINGS, the first HPACK entries) is not charged to the measured calls.
const WIRE_WARM_UP_CALLS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Transport {
    /// The reference: the service layer called in the process, no transport at all.
    Service,
    Rest,
    Grpc,
    Gateway,
}

impl Transport {
    const ALL: [Self; 4] = [Self::Service, Self::Rest, Self::Grpc, Self::Gateway];
}

/// The transports the chart draws (the service layer, several times faster on reads, is in the
/// caption: as a bar it would flatten the others).
const CHARTED: [Transport; 3] = [Transport::Rest, Transport::Grpc, Transport::Gateway];

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Self::Service => "service layer",
            Self::Rest => "REST",
            Self::Grpc => "gRPC",
            Self::Gateway => "gateway",
        }
    }

    fn flag(self) -> String {
        match self {
            Self::Service => "service",
            Self::Rest => "rest",
            Self::Grpc => "grpc",
            Self::Gateway => "gateway",
        }
        .to_owned()
    }

    fn wire(self) -> &'static str {
        match self {
            Self::Service => "no transport",
            Self::Rest => "HTTP/1.1 + JSON",
            Self::Grpc => "HTTP/2 + protobuf",
            Self::Gateway => "HTTP/1.1 + JSON → gRPC",
        }
    }

    fn color(self) -> (&'static str, &'static str) {
        match self {
            Self::Service => ("#8c8c8c", "#d6d6d6"),
            Self::Rest => ("#3b6ea8", "#b8cde6"),
            Self::Grpc => ("#d9782d", "#f3cfb0"),
            Self::Gateway => ("#4a9a5b", "#bfe0c5"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    GetAccount,
    Transfer,
    /// The transport alone: a health check, with no authentication and no database (REST `/healthz`,
    /// gRPC `grpc.health.v1.Health/Check`), through the same layers as every call.
    Health,
}

impl Op {
    /// The operations the benchmark is about (the health check is measured beside them).
    const ALL: [Self; 2] = [Self::GetAccount, Self::Transfer];

    fn http(self) -> &'static str {
        match self {
            Self::GetAccount => "GET /v1/accounts/{id}",
            Self::Transfer => "POST /v1/transfers",
            Self::Health => "GET /healthz",
        }
    }

    fn rpc(self) -> &'static str {
        match self {
            Self::GetAccount => "AccountService/GetAccount",
            Self::Transfer => "TransferService/CreateTransfer",
            Self::Health => "grpc.health.v1.Health/Check",
        }
    }

    fn service(self) -> &'static str {
        match self {
            Self::GetAccount => "Bank::get_account",
            Self::Transfer => "Bank::transfer",
            Self::Health => "(none)",
        }
    }

    /// Whether `transport` has this operation (the gateway serves only the API's own methods).
    fn on(self, transport: Transport) -> bool {
        match self {
            Self::GetAccount | Self::Transfer => true,
            Self::Health => matches!(transport, Transport::Rest | Transport::Grpc),
        }
    }

    fn label(self, transport: Transport) -> &'static str {
        match transport {
            Transport::Service => self.service(),
            Transport::Grpc => self.rpc(),
            Transport::Rest | Transport::Gateway => self.http(),
        }
    }
}

/// A logged-in customer: user `i` owns account `i`.
#[derive(Debug, Clone)]
struct Customer {
    account: i64,
    token: String,
    metadata: MetadataValue<Ascii>,
}

/// One caller's connection to one listener.
#[derive(Debug, Clone)]
enum Conn {
    Http {
        client: reqwest::Client,
        base: Arc<str>,
    },
    Grpc(Box<GrpcClients>),
    Service(Bank),
}

#[derive(Debug, Clone)]
struct GrpcClients {
    accounts: AccountServiceClient<Channel>,
    transfers: TransferServiceClient<Channel>,
    health: HealthClient<Channel>,
}

impl Conn {
    /// An HTTP/1.1 client of its own (so its own keep-alive connection) to `addr`; every connection it
    /// opens adds one to `connects`.
    fn http(addr: SocketAddr, connects: &Arc<AtomicU64>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .connector_layer(CountConnects(Arc::clone(connects)))
            .build()
            .context("building an HTTP client")?;
        Ok(Self::Http {
            client,
            base: format!("http://{addr}").into(),
        })
    }

    /// gRPC clients over `channel` (shared, multiplexed).
    fn grpc(channel: &Channel) -> Self {
        Self::Grpc(Box::new(GrpcClients {
            accounts: AccountServiceClient::new(channel.clone()),
            transfers: TransferServiceClient::new(channel.clone()),
            health: HealthClient::new(channel.clone()),
        }))
    }

    /// One call of `op` as `customer`; `to` is the transfer's destination. Fails unless it succeeds.
    async fn call(&mut self, op: Op, customer: &Customer, to: i64) -> anyhow::Result<()> {
        match self {
            Self::Http { client, base } => {
                let request = match op {
                    Op::GetAccount => client
                        .get(format!("{base}/v1/accounts/{}", customer.account))
                        .bearer_auth(&customer.token),
                    Op::Transfer => client
                        .post(format!("{base}/v1/transfers"))
                        .bearer_auth(&customer.token)
                        .json(&json!({
                            "from_account_id": customer.account,
                            "to_account_id": to,
                            "amount": 1,
                            "currency": "USD",
                        })),
                    Op::Health => client.get(format!("{base}/healthz")),
                };
                let response = request
                    .send()
                    .await
                    .with_context(|| format!("{} to {base}", op.http()))?;
                let status = response.status();
                let body = response.bytes().await?;
                anyhow::ensure!(
                    status.is_success(),
                    "{} on {base} answered {status}: {}",
                    op.http(),
                    String::from_utf8_lossy(&body)
                );
            }
            Self::Grpc(clients) => match op {
                Op::GetAccount => {
                    let request = authed(
                        pb::GetAccountRequest {
                            id: customer.account,
                        },
                        customer,
                    );
                    clients
                        .accounts
                        .get_account(request)
                        .await
                        .context(op.rpc())?;
                }
                Op::Transfer => {
                    let request = authed(
                        pb::CreateTransferRequest {
                            from_account_id: customer.account,
                            to_account_id: to,
                            amount: 1,
                            currency: "USD".into(),
                        },
                        customer,
                    );
                    clients
                        .transfers
                        .create_transfer(request)
                        .await
                        .context(op.rpc())?;
                }
                Op::Health => {
                    clients
                        .health
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .context(op.rpc())?;
                }
            },
            Self::Service(bank) => {
                // Account i belongs to user i (see `prepare_database`).
                let caller = Caller {
                    user_id: customer.account,
                    role: Role::Customer,
                };
                match op {
                    Op::GetAccount => {
                        bank.get_account(caller, customer.account)
                            .await
                            .context(op.service())?;
                    }
                    Op::Transfer => {
                        let request = TransferRequest {
                            from_account_id: customer.account,
                            to_account_id: to,
                            amount: 1,
                            currency: "USD",
                        };
                        bank.transfer(caller, None, request)
                            .await
                            .context(op.service())?;
                    }
                    Op::Health => anyhow::bail!("the service layer has no health check"),
                }
            }
        }
        Ok(())
    }
}

fn authed<T>(message: T, customer: &Customer) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", customer.metadata.clone());
    request
}

/// A reqwest connector layer that counts the connections a client opens. reqwest returns a connection
/// to its pool in a task of its own once a response is read, so a request sent at once may find the pool
/// empty and open another connection: this shows how often that happens.
#[derive(Debug, Clone)]
struct CountConnects(Arc<AtomicU64>);

impl<S> tower::Layer<S> for CountConnects {
    type Service = Counting<S>;

    fn layer(&self, inner: S) -> Counting<S> {
        Counting {
            inner,
            count: Arc::clone(&self.0),
        }
    }
}

#[derive(Debug, Clone)]
struct Counting<S> {
    inner: S,
    count: Arc<AtomicU64>,
}

impl<S: tower::Service<R>, R> tower::Service<R> for Counting<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> S::Future {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.call(request)
    }
}

/// CPU time used so far by this process (every thread) and by each Postgres backend connected to the
/// benchmark database, from `/proc`. Backends of other databases (other people's tests on a shared
/// server) and Postgres's own background processes are left out.
#[derive(Debug)]
struct CpuSnapshot {
    /// This process, every thread (exited ones included): (user, kernel) seconds.
    own: (f64, f64),
    /// The load generator's threads: (user, kernel) seconds.
    client: (f64, f64),
    /// Seconds by process id; `None` if `/proc` cannot be listed.
    postgres: Option<BTreeMap<String, f64>>,
    /// Every CPU of the machine: (busy, all) seconds, from `/proc/stat`.
    machine: (f64, f64),
}

/// CPU seconds used between two snapshots.
#[derive(Debug, Clone, Copy)]
struct CpuUsed {
    /// The API: this process's threads other than the load generator's.
    server: f64,
    /// The part of `server` spent in the kernel (system calls: sockets, futexes, epoll).
    server_kernel: f64,
    client: f64,
    postgres: Option<f64>,
    /// Everything else on the machine, as a share of all its CPU time.
    others_share: f64,
}

/// The name, user and kernel seconds in a `/proc/.../stat` line: utime and stime are fields 14 and 15,
/// counted in USER_HZ ticks (100 per second on Linux).
fn stat_seconds(stat: &str) -> Option<(String, f64, f64)> {
    const HZ: f64 = 100.0;
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_owned();
    let mut fields = stat.get(close + 2..)?.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((comm, utime / HZ, stime / HZ))
}

impl CpuSnapshot {
    fn take(database: &str) -> Self {
        let own = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| stat_seconds(&stat))
            .map_or((f64::NAN, f64::NAN), |(_, user, sys)| (user, sys));
        let client = std::fs::read_dir("/proc/self/task").map_or((f64::NAN, f64::NAN), |dir| {
            dir.filter_map(Result::ok)
                .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
                .filter_map(|stat| stat_seconds(&stat))
                .filter(|(name, _, _)| name == LOAD_THREAD)
                .fold((0.0, 0.0), |(u, k), (_, user, sys)| (u + user, k + sys))
        });
        // "cpu  user nice system idle iowait irq softirq steal ...", in USER_HZ ticks.
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|stat| {
                let line = stat.lines().next()?;
                let ticks: Vec<f64> = line
                    .split_whitespace()
                    .skip(1)
                    .take(8)
                    .filter_map(|t| t.parse().ok())
                    .collect();
                let all: f64 = ticks.iter().sum();
                let idle = ticks.get(3)? + ticks.get(4)?;
                Some(((all - idle) / 100.0, all / 100.0))
            })
            .unwrap_or((f64::NAN, f64::NAN));
        // A backend's title: "postgres: 15/main: <user> <database> <client> <state>".
        let ours = format!(" {database} ");
        let postgres = std::fs::read_dir("/proc").ok().map(|dir| {
            dir.filter_map(Result::ok)
                .filter_map(|entry| {
                    let pid = entry.file_name().to_string_lossy().into_owned();
                    if !pid.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                    let (comm, user, sys) = stat_seconds(&stat)?;
                    if comm != "postgres" {
                        return None;
                    }
                    let title = std::fs::read(entry.path().join("cmdline")).ok()?;
                    String::from_utf8_lossy(&title)
                        .contains(&ours)
                        .then_some((pid, user + sys))
                })
                .collect()
        });
        Self {
            own,
            client,
            postgres,
            machine,
        }
    }

    /// Seconds used since `before`: this process, and Postgres (what processes still alive used; one
    /// that exited in between, such as an autovacuum worker, takes its time with it).
    fn since(&self, before: &Self) -> CpuUsed {
        let postgres = match (&before.postgres, &self.postgres) {
            (Some(before), Some(after)) => Some(
                after
                    .iter()
                    .map(|(pid, t)| t - before.get(pid).copied().unwrap_or(0.0))
                    .sum(),
            ),
            _ => None,
        };
        let own = (self.own.0 - before.own.0) + (self.own.1 - before.own.1);
        let client = (self.client.0 - before.client.0) + (self.client.1 - before.client.1);
        let server_kernel = (self.own.1 - before.own.1) - (self.client.1 - before.client.1);
        let busy = self.machine.0 - before.machine.0;
        let all = self.machine.1 - before.machine.1;
        CpuUsed {
            server: own - client,
            server_kernel,
            client,
            postgres,
            others_share: ((busy - own - postgres.unwrap_or(0.0)) / all).max(0.0),
        }
    }
}

/// A random account other than `account`, out of `1..=accounts`.
fn random_other(account: i64, accounts: i64) -> i64 {
    let to = rand::rng().random_range(1..accounts);
    if to >= account { to + 1 } else { to }
}

/// What one (operation, transport) pair measured over all runs.
#[derive(Debug, Default)]
struct Series {
    throughput: Vec<f64>,
    latencies: Vec<Duration>,
    /// CPU microseconds per call, each run: the API, the load generator, Postgres.
    cpu_server: Vec<f64>,
    cpu_server_kernel: Vec<f64>,
    cpu_client: Vec<f64>,
    cpu_postgres: Vec<f64>,
    /// The share of the machine's CPU that other processes took, each run.
    others_share: Vec<f64>,
    /// Connections the HTTP clients opened during the measurements (none for gRPC: its channels are
    /// connected once, before).
    connects: u64,
}

/// A pair's figures: median throughput, latency percentiles over every call.
#[derive(Debug, Clone, Copy)]
struct Summary {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    cpu_server: f64,
    cpu_server_kernel: f64,
    cpu_client: f64,
    cpu_postgres: f64,
    others_share: f64,
}

/// Bytes per call on a warm connection, each direction.
#[derive(Debug, Clone, Copy)]
struct Wire {
    request: f64,
    response: f64,
    connections: u64,
}

/// The name of the load generator's threads, so their CPU time can be told from the API's.
const LOAD_THREAD: &str = "load-generator";

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.load_threads >= 1, "--load-threads must be at least 1");
    // The API gets a runtime like `streambank-api`'s own (a worker per core); the load generator gets
    // its own runtime and threads, as a separate client process would, so the CPU time of each can be
    // read apart.
    let server = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the API's runtime")?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.load_threads)
        .thread_name(LOAD_THREAD)
        .enable_all()
        .build()
        .context("building the load generator's runtime")?;
    let handle = load.handle().clone();
    let result = server.block_on(run(args, handle));
    load.shutdown_background();
    result
}

async fn run(args: Args, load: tokio::runtime::Handle) -> anyhow::Result<()> {
    anyhow::ensure!(args.concurrency >= 1, "--concurrency must be at least 1");
    anyhow::ensure!(
        args.grpc_channels >= 1,
        "--grpc-channels must be at least 1"
    );
    anyhow::ensure!(
        i64::try_from(args.concurrency)? < args.accounts,
        "--accounts must exceed --concurrency"
    );
    let options: PgConnectOptions = args
        .database_url
        .parse()
        .context("BENCH_TRANSPORTS_DATABASE_URL")?;
    let database = options
        .get_database()
        .context("the benchmark URL names no database")?
        .to_owned();
    prepare_database(&options, &args.database_url, args.accounts, 0)
        .await
        .context("preparing the benchmark database")?;
    let pool = streambank_store::pool_options(u32::try_from(args.concurrency)?)
        .connect_with(options.clone())
        .await
        .context("connecting to the benchmark database")?;
    let password = streambank_domain::Password::parse(PASSWORD).map_err(anyhow::Error::msg)?;
    let hash = streambank_service::password::hash(&password).await?;
    sqlx::query("UPDATE users SET password_hash = $1, email_verified_at = now()")
        .bind(&hash)
        .execute(&pool)
        .await?;
    warm_up(&Bank::new(pool.clone()), &pool, args.accounts).await?;
    pool.close().await;

    let vars = [
        ("DATABASE_URL", args.database_url.clone()),
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("TOKEN_SYMMETRIC_KEY", KEY.to_owned()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("DATABASE_MAX_CONNECTIONS", args.concurrency.to_string()),
    ];
    let config = Config::from_lookup(&move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })?;
    let api = Api::bind(&config).await?;
    let addrs: BTreeMap<Transport, SocketAddr> = [
        (Transport::Rest, api.http_addr()?),
        (Transport::Grpc, api.grpc_addr()?),
        (Transport::Gateway, api.gateway_addr()?),
    ]
    .into();
    let sessions = api.sessions();
    tokio::spawn(api.run(std::future::pending()));
    // Authentication is answered from the session cache once its invalidation listener is up.
    let waiting = Instant::now();
    while !sessions.cache_enabled() && waiting.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Everything a client does from here on (connections included) lives on the load runtime.
    load.spawn(drive(args, addrs, options, database))
        .await
        .context("the load generator panicked")?
}

/// The client side: logs in, connects, measures, counts bytes, reports.
async fn drive(
    args: Args,
    addrs: BTreeMap<Transport, SocketAddr>,
    options: PgConnectOptions,
    database: String,
) -> anyhow::Result<()> {
    // The reference: the service layer with a pool of its own, as large as the API's.
    let pool = streambank_store::pool_options(u32::try_from(args.concurrency)?)
        .connect_with(options)
        .await
        .context("connecting to the benchmark database")?;
    let bank = Bank::new(pool);

    let customers = Arc::new(log_in(addrs[&Transport::Rest], args.concurrency).await?);

    // Every caller's connection to every listener, made once and kept for the whole run.
    let mut conns: BTreeMap<Transport, Vec<Conn>> = BTreeMap::new();
    let connects: BTreeMap<Transport, Arc<AtomicU64>> = Transport::ALL
        .map(|t| (t, Arc::new(AtomicU64::new(0))))
        .into();
    for transport in [Transport::Rest, Transport::Gateway] {
        let list = (0..args.concurrency)
            .map(|_| Conn::http(addrs[&transport], &connects[&transport]))
            .collect::<anyhow::Result<_>>()?;
        conns.insert(transport, list);
    }
    conns.insert(
        Transport::Service,
        vec![Conn::Service(bank); args.concurrency],
    );
    let mut channels = Vec::new();
    for _ in 0..args.grpc_channels {
        channels.push(grpc_channel(addrs[&Transport::Grpc]).await?);
    }
    conns.insert(
        Transport::Grpc,
        (0..args.concurrency)
            .map(|i| Conn::grpc(&channels[i % channels.len()]))
            .collect(),
    );

    // A transport that does not answer (the gateway while it is being built) is left out, not fatal.
    let mut transports = Vec::new();
    let mut missing = Vec::new();
    for name in &args.transports {
        anyhow::ensure!(
            Transport::ALL.iter().any(|t| t.flag() == *name),
            "--transports: unknown transport {name:?} (service, rest, grpc, gateway)"
        );
    }
    for transport in Transport::ALL
        .into_iter()
        .filter(|t| args.transports.contains(&t.flag()))
    {
        match probe(&mut conns, transport, &customers, args.accounts).await {
            Ok(()) => transports.push(transport),
            Err(e) => {
                eprintln!("{} left out: {e:#}", transport.name());
                missing.push((transport, format!("{e:#}")));
            }
        }
    }
    anyhow::ensure!(!transports.is_empty(), "no transport answers");
    compare_json(&addrs, &customers[0], &transports).await;

    let ops: Vec<Op> = Op::ALL
        .into_iter()
        .chain((!args.no_health).then_some(Op::Health))
        .collect();
    // A second of each pair first: every HTTP client opens its connection, caches and plans warm up.
    for &op in &ops {
        for &transport in transports.iter().filter(|&&t| op.on(t)) {
            load(
                &conns[&transport],
                &customers,
                args.accounts,
                Duration::from_secs(1),
                op,
            )
            .await
            .with_context(|| format!("warming up {} {}", transport.name(), op.label(transport)))?;
        }
    }

    let duration = Duration::from_secs(args.seconds);
    let mut series: BTreeMap<(Op, Transport), Series> = BTreeMap::new();
    for run in 0..args.runs {
        let mut line = format!("run {}:", run + 1);
        for &op in &ops {
            let these: Vec<Transport> = transports.iter().copied().filter(|&t| op.on(t)).collect();
            // Rotate the order from run to run so no transport always goes first (or last).
            for k in 0..these.len() {
                let transport = these[(k + run) % these.len()];
                let connected = connects[&transport].load(Ordering::Relaxed);
                let before = CpuSnapshot::take(&database);
                let (tps, mut latencies) =
                    load(&conns[&transport], &customers, args.accounts, duration, op)
                        .await
                        .with_context(|| format!("{} {}", transport.name(), op.label(transport)))?;
                let used = CpuSnapshot::take(&database).since(&before);
                let calls = latencies.len().max(1) as f64;
                let _ = write!(
                    line,
                    " {} {} {tps:.0}/s;",
                    transport.name(),
                    op.label(transport)
                );
                let entry = series.entry((op, transport)).or_default();
                entry.throughput.push(tps);
                entry.latencies.append(&mut latencies);
                entry.cpu_server.push(used.server * 1e6 / calls);
                entry
                    .cpu_server_kernel
                    .push(used.server_kernel * 1e6 / calls);
                entry.cpu_client.push(used.client * 1e6 / calls);
                entry.others_share.push(used.others_share);
                if let Some(postgres) = used.postgres {
                    entry.cpu_postgres.push(postgres * 1e6 / calls);
                }
                entry.connects += connects[&transport].load(Ordering::Relaxed) - connected;
            }
        }
        eprintln!("{line}");
    }
    let summaries: BTreeMap<(Op, Transport), Summary> = series
        .iter_mut()
        .map(|(key, s)| {
            s.latencies.sort();
            let summary = Summary {
                throughput: median(&s.throughput),
                p50: percentile(&s.latencies, 0.5),
                p99: percentile(&s.latencies, 0.99),
                cpu_server: median(&s.cpu_server),
                cpu_server_kernel: median(&s.cpu_server_kernel),
                cpu_client: median(&s.cpu_client),
                cpu_postgres: median(&s.cpu_postgres),
                others_share: median(&s.others_share),
            };
            (*key, summary)
        })
        .collect();

    let mut wire = BTreeMap::new();
    for &op in &ops {
        for &transport in transports
            .iter()
            .filter(|&&t| t != Transport::Service && op.on(t))
        {
            let w = wire_bytes(
                transport,
                addrs[&transport],
                op,
                &customers[0],
                args.accounts,
                args.wire_calls,
            )
            .await
            .with_context(|| format!("counting bytes of {} {}", transport.name(), op.rpc()))?;
            wire.insert((op, transport), w);
        }
    }

    let report = Report {
        args: &args,
        summaries: &summaries,
        series: &series,
        wire: &wire,
        missing: &missing,
    };
    print!("{}", report.markdown());
    let svg = report.svg();
    if let Some(dir) = args.chart.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&args.chart, svg)
        .with_context(|| format!("writing the chart to {}", args.chart.display()))?;
    eprintln!("(chart written to {})", args.chart.display());
    Ok(())
}

/// Logs in customers `1..=n` over REST; customer `i` owns account `i`.
async fn log_in(rest: SocketAddr, n: usize) -> anyhow::Result<Vec<Customer>> {
    let client = reqwest::Client::new();
    let mut customers = Vec::with_capacity(n);
    for user in 1..=n {
        let response = client
            .post(format!("http://{rest}/v1/sessions"))
            .json(&json!({"username": format!("bench_{user}"), "password": PASSWORD}))
            .send()
            .await
            .context("logging in")?;
        anyhow::ensure!(
            response.status() == StatusCode::CREATED,
            "login failed: {}",
            response.text().await?
        );
        let body: Value = response.json().await?;
        let token = body["access_token"]
            .as_str()
            .context("the login answer has no access_token")?
            .to_owned();
        let metadata = MetadataValue::try_from(format!("Bearer {token}"))
            .context("the access token is not ASCII")?;
        customers.push(Customer {
            account: i64::try_from(user)?,
            token,
            metadata,
        });
    }
    Ok(customers)
}

async fn grpc_channel(addr: SocketAddr) -> anyhow::Result<Channel> {
    Endpoint::from_shared(format!("http://{addr}"))
        .context("gRPC endpoint")?
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to the gRPC listener {addr}"))
}

/// One call of each operation on the first connection: does the listener answer as it should?
async fn probe(
    conns: &mut BTreeMap<Transport, Vec<Conn>>,
    transport: Transport,
    customers: &[Customer],
    accounts: i64,
) -> anyhow::Result<()> {
    let conn = conns
        .get_mut(&transport)
        .and_then(|list| list.first_mut())
        .context("no connection")?;
    let customer = &customers[0];
    for op in Op::ALL {
        conn.call(op, customer, random_other(customer.account, accounts))
            .await?;
    }
    Ok(())
}

/// Warns (on stderr) if the gateway's JSON for an account differs from REST's.
async fn compare_json(
    addrs: &BTreeMap<Transport, SocketAddr>,
    customer: &Customer,
    transports: &[Transport],
) {
    if !transports.contains(&Transport::Gateway) {
        return;
    }
    let client = reqwest::Client::new();
    let mut bodies = Vec::new();
    for transport in [Transport::Rest, Transport::Gateway] {
        let body = async {
            client
                .get(format!(
                    "http://{}/v1/accounts/{}",
                    addrs[&transport], customer.account
                ))
                .bearer_auth(&customer.token)
                .send()
                .await?
                .json::<Value>()
                .await
        }
        .await;
        bodies.push(body.map_err(|e| e.to_string()));
    }
    if bodies[0] != bodies[1] {
        eprintln!(
            "warning: REST and the gateway answer GET /v1/accounts/{{id}} differently: {:?} vs {:?}",
            bodies[0], bodies[1]
        );
    }
}

/// Calls per second and every call's latency, one task per customer, each on its own `conns` entry.
async fn load(
    conns: &[Conn],
    customers: &Arc<Vec<Customer>>,
    accounts: i64,
    duration: Duration,
    op: Op,
) -> anyhow::Result<(f64, Vec<Duration>)> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, conn) in conns.iter().cloned().enumerate() {
        let customers = Arc::clone(customers);
        tasks.spawn(async move {
            let mut conn = conn;
            let customer = &customers[i];
            let mut latencies = Vec::with_capacity(64 * 1024);
            while Instant::now() < deadline {
                let to = random_other(customer.account, accounts);
                let sent = Instant::now();
                conn.call(op, customer, to).await?;
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        });
    }
    let mut all = Vec::new();
    while let Some(latencies) = tasks.join_next().await {
        all.append(&mut latencies??);
    }
    Ok((all.len() as f64 / start.elapsed().as_secs_f64(), all))
}

/// Bytes per call of `op` on one warm connection to `target`, through a counting proxy.
async fn wire_bytes(
    transport: Transport,
    target: SocketAddr,
    op: Op,
    customer: &Customer,
    accounts: i64,
    calls: u64,
) -> anyhow::Result<Wire> {
    let proxy = CountingProxy::start(target).await?;
    let mut conn = match transport {
        Transport::Grpc => Conn::grpc(&grpc_channel(proxy.addr).await?),
        Transport::Rest | Transport::Gateway => {
            Conn::http(proxy.addr, &Arc::new(AtomicU64::new(0)))?
        }
        Transport::Service => anyhow::bail!("the service layer has no wire"),
    };
    for _ in 0..WIRE_WARM_UP_CALLS {
        conn.call(op, customer, random_other(customer.account, accounts))
            .await?;
    }
    // Let anything still in flight (a WINDOW_UPDATE, a SETTINGS ack) arrive before reading.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (request0, response0) = proxy.counts();
    for _ in 0..calls {
        conn.call(op, customer, random_other(customer.account, accounts))
            .await?;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (request1, response1) = proxy.counts();
    let connections = proxy.connections.load(Ordering::Relaxed);
    drop(conn);
    proxy.stop();
    let per_call = |bytes: u64| bytes as f64 / calls.max(1) as f64;
    Ok(Wire {
        request: per_call(request1 - request0),
        response: per_call(response1 - response0),
        connections,
    })
}

/// A TCP proxy on loopback that forwards every connection to `target` and counts the bytes it copies:
/// client to server (`request`) and server to client (`response`), over all its connections.
#[derive(Debug)]
struct CountingProxy {
    addr: SocketAddr,
    request: Arc<AtomicU64>,
    response: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    async fn start(target: SocketAddr) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the counting proxy")?;
        let addr = listener.local_addr()?;
        let request = Arc::new(AtomicU64::new(0));
        let response = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let (req, resp, conns) = (
            Arc::clone(&request),
            Arc::clone(&response),
            Arc::clone(&connections),
        );
        let accept = tokio::spawn(async move {
            // Dropping the set (when the accept task is aborted) ends every proxied connection.
            let mut proxied = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                conns.fetch_add(1, Ordering::Relaxed);
                let (req, resp) = (Arc::clone(&req), Arc::clone(&resp));
                proxied.spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let mut client = Counted {
                        inner: client,
                        read: req,
                    };
                    let mut server = Counted {
                        inner: server,
                        read: resp,
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
            }
        });
        Ok(Self {
            addr,
            request,
            response,
            connections,
            accept,
        })
    }

    fn counts(&self) -> (u64, u64) {
        (
            self.request.load(Ordering::Relaxed),
            self.response.load(Ordering::Relaxed),
        )
    }

    fn stop(self) {
        self.accept.abort();
    }
}

/// A stream that adds every byte read from it to `read` (so each direction is counted once, where the
/// proxy reads it).
#[derive(Debug)]
struct Counted {
    inner: TcpStream,
    read: Arc<AtomicU64>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        self.read.fetch_add(read as u64, Ordering::Relaxed);
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Everything measured, ready to print and draw.
#[derive(Debug)]
struct Report<'a> {
    args: &'a Args,
    summaries: &'a BTreeMap<(Op, Transport), Summary>,
    series: &'a BTreeMap<(Op, Transport), Series>,
    wire: &'a BTreeMap<(Op, Transport), Wire>,
    missing: &'a [(Transport, String)],
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `12345.6` as `12,346`.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

impl Report<'_> {
    fn get(&self, op: Op, transport: Transport) -> Option<Summary> {
        self.summaries.get(&(op, transport)).copied()
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let a = self.args;
        let _ = writeln!(
            out,
            "| operation ({} concurrent callers) | transport | throughput (req/s) | of the service layer's | p50 (ms) | p99 (ms) | each run (req/s) |",
            a.concurrency
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---|");
        for op in Op::ALL {
            for transport in Transport::ALL {
                let Some(s) = self.get(op, transport) else {
                    let _ = writeln!(
                        out,
                        "| `{}` | {} | n/a | | | | |",
                        op.label(transport),
                        transport.name()
                    );
                    continue;
                };
                let runs = self.series[&(op, transport)]
                    .throughput
                    .iter()
                    .map(|t| format!("{t:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                let of_service = self
                    .get(op, Transport::Service)
                    .map(|r| format!("{:.2}x", s.throughput / r.throughput))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| `{}` | {} ({}) | {:.0} | {of_service} | {:.2} | {:.2} | {runs} |",
                    op.label(transport),
                    transport.name(),
                    transport.wire(),
                    s.throughput,
                    ms(s.p50),
                    ms(s.p99),
                );
            }
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Medians of {} runs of {} s per (operation, transport), transports interleaved in each run \
             with their order rotated; latency percentiles over every call of all runs. REST and the \
             gateway: one HTTP/1.1 keep-alive connection per caller; gRPC: the callers share {} HTTP/2 \
             connections.",
            a.runs, a.seconds, a.grpc_channels
        );
        for (transport, why) in self.missing {
            let _ = writeln!(
                out,
                "\n{} left out: it did not answer ({why}).",
                transport.name()
            );
        }

        let _ = writeln!(out);
        let _ = writeln!(out, "| ratio | value | target |");
        let _ = writeln!(out, "|---|---:|---|");
        if let (Some(g), Some(r)) = (
            self.get(Op::GetAccount, Transport::Grpc),
            self.get(Op::GetAccount, Transport::Rest),
        ) {
            let ratio = g.throughput / r.throughput;
            let _ = writeln!(
                out,
                "| gRPC / REST throughput, GET account | **{ratio:.2}x** | ≥ 1.2x: {} |",
                verdict(ratio >= 1.2)
            );
        }
        if let (Some(g), Some(r)) = (
            self.get(Op::Transfer, Transport::Grpc),
            self.get(Op::Transfer, Transport::Rest),
        ) {
            let _ = writeln!(
                out,
                "| gRPC / REST throughput, transfer | {:.2}x | (reported) |",
                g.throughput / r.throughput
            );
        }
        for op in Op::ALL {
            let (Some(g), Some(r)) = (
                self.get(op, Transport::Gateway),
                self.get(op, Transport::Rest),
            ) else {
                continue;
            };
            let ratio = g.throughput / r.throughput;
            let name = match op {
                Op::GetAccount => "GET account",
                Op::Transfer => "transfer",
                Op::Health => "health check",
            };
            let _ = writeln!(
                out,
                "| gateway / REST throughput, {name} | **{ratio:.2}x** ({:+.0}% req/s) | ≥ 0.8x: {} |",
                (ratio - 1.0) * 100.0,
                verdict(ratio >= 0.8)
            );
            let extra = ms(g.p50) - ms(r.p50);
            let _ = writeln!(
                out,
                "| gateway − REST p50 latency, {name} | {extra:+.2} ms ({:+.0}%) | (reported) |",
                extra / ms(r.p50) * 100.0
            );
        }

        if let (Some(g), Some(r)) = (
            self.get(Op::Health, Transport::Grpc),
            self.get(Op::Health, Transport::Rest),
        ) {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "The transport alone (a health check: no authentication, no database, the same layers), \
                 measured in the same runs:"
            );
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "| health check | throughput (req/s) | p50 (ms) | p99 (ms) | API CPU per call (µs) | load generator CPU per call (µs) |"
            );
            let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
            for (transport, s) in [(Transport::Rest, r), (Transport::Grpc, g)] {
                let _ = writeln!(
                    out,
                    "| {} `{}` | {:.0} | {:.2} | {:.2} | {:.0} | {:.0} |",
                    transport.name(),
                    Op::Health.label(transport),
                    s.throughput,
                    ms(s.p50),
                    ms(s.p99),
                    s.cpu_server,
                    s.cpu_client
                );
            }
            let _ = writeln!(
                out,
                "| gRPC / REST | **{:.2}x** | | | {:.2}x | {:.2}x |",
                g.throughput / r.throughput,
                g.cpu_server / r.cpu_server,
                g.cpu_client / r.cpu_client
            );
        }

        let _ = writeln!(out);
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let _ = writeln!(
            out,
            "| CPU per call (µs) | transport | API | of which in the kernel | load generator | API + load generator − service layer's | Postgres | all | of {cores} cores | others' share of the machine | HTTP connections opened while measuring |"
        );
        let _ = writeln!(
            out,
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for op in Op::ALL.into_iter().chain([Op::Health]) {
            for transport in Transport::ALL {
                let Some(s) = self.get(op, transport) else {
                    continue;
                };
                let all = s.cpu_server + s.cpu_client + s.cpu_postgres;
                let connects = match transport {
                    Transport::Service => "(in the process)".to_owned(),
                    Transport::Grpc => format!("({} channels, opened before)", a.grpc_channels),
                    Transport::Rest | Transport::Gateway => {
                        self.series[&(op, transport)].connects.to_string()
                    }
                };
                let over = match (transport, self.get(op, Transport::Service)) {
                    (Transport::Service, _) | (_, None) => String::new(),
                    (_, Some(r)) => format!(
                        "{:+.0}",
                        s.cpu_server + s.cpu_client - r.cpu_server - r.cpu_client
                    ),
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {:.0} | {:.0} | {:.0} | {over} | {:.0} | {all:.0} | {:.0}% | {:.0}% | {connects} |",
                    op.label(transport),
                    transport.name(),
                    s.cpu_server,
                    s.cpu_server_kernel,
                    s.cpu_client,
                    s.cpu_postgres,
                    all * s.throughput / 1e6 / cores as f64 * 100.0,
                    s.others_share * 100.0,
                );
            }
        }
        let _ = writeln!(
            out,
            "\nCPU time from `/proc` (utime + stime, 10 ms ticks) over each measurement, divided by its \
             calls; medians over the runs. API: the process's threads other than the load generator's \
             (which run on a runtime of their own, `{LOAD_THREAD}`); the service-layer reference runs \
             on the load generator's threads. Postgres: the backends connected to the benchmark \
             database (background processes such as the WAL writer are left out). Others' share: the \
             machine's busy time not ours nor our backends', over all its CPU time. The HTTP clients \
             opened their {} connections per transport in a warm-up second before the first \
             measurement; the last column counts the ones they opened after that, over all runs.",
            a.concurrency
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| bytes on the wire per call | transport | request (client → server) | response (server → client) | total |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|");
        for op in Op::ALL.into_iter().chain([Op::Health]) {
            for transport in Transport::ALL {
                let Some(w) = self.wire.get(&(op, transport)) else {
                    continue;
                };
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {:.1} | {:.1} | {:.1} |",
                    op.label(transport),
                    transport.name(),
                    w.request,
                    w.response,
                    w.request + w.response
                );
            }
        }
        let _ = writeln!(out);
        let connections: Vec<String> = self
            .wire
            .iter()
            .filter(|(_, w)| w.connections != 1)
            .map(|((op, t), w)| format!("{} {}: {} connections", t.name(), op.rpc(), w.connections))
            .collect();
        let _ = writeln!(
            out,
            "Bytes per call: {} sequential calls on one warm connection (after {WIRE_WARM_UP_CALLS} \
             warm-up calls), counted by a TCP proxy in the process, both directions; TCP/IP headers \
             are not included. {}",
            a.wire_calls,
            if connections.is_empty() {
                "Every count went over a single connection.".to_owned()
            } else {
                format!(
                    "Warning, more than one connection: {}.",
                    connections.join("; ")
                )
            }
        );
        out
    }

    /// Two panels: throughput grouped by operation, and p50 (solid) with p99 (light) latency.
    fn svg(&self) -> String {
        const W: f64 = 980.0;
        const H: f64 = 500.0;
        const TOP: f64 = 120.0;
        const BOTTOM: f64 = 400.0;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">"##
        );
        let _ = writeln!(s, r##"<rect width="{W}" height="{H}" fill="#ffffff"/>"##);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="30" text-anchor="middle" font-size="18" font-weight="bold">StreamBank: REST, gRPC and the gateway side by side</text>"##,
            W / 2.0
        );
        let a = self.args;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="52" text-anchor="middle" fill="#444">{} concurrent callers; medians of {} runs of {} s; one process, Postgres and the load generator on {} cores; {}</text>"##,
            W / 2.0,
            a.concurrency,
            a.runs,
            a.seconds,
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
            chrono::Utc::now().format("%Y-%m-%d")
        );
        // Legend.
        let legend: Vec<(Transport, String)> = CHARTED
            .map(|t| (t, format!("{} ({})", t.name(), t.wire())))
            .into();
        // About 6.5 px per character at 12 px, plus the swatch and a gap.
        let item = |text: &str| text.chars().count() as f64 * 6.5 + 44.0;
        let mut x = (W - legend.iter().map(|(_, text)| item(text)).sum::<f64>()) / 2.0;
        for (transport, text) in &legend {
            let (solid, _) = transport.color();
            let _ = writeln!(
                s,
                r##"<rect x="{x:.1}" y="68" width="14" height="14" fill="{solid}"/><text x="{:.1}" y="80">{}</text>"##,
                x + 20.0,
                esc(text)
            );
            x += item(text);
        }

        let throughput = |op: Op, t: Transport| self.get(op, t).map(|s| s.throughput);
        self.panel(
            &mut s,
            60.0,
            450.0,
            (TOP, BOTTOM),
            "Throughput (requests/s, higher is better; in the bars: ratio to REST)",
            &throughput,
            None,
        );
        let p50 = |op: Op, t: Transport| self.get(op, t).map(|s| ms(s.p50));
        let p99 = |op: Op, t: Transport| self.get(op, t).map(|s| ms(s.p99));
        self.panel(
            &mut s,
            560.0,
            390.0,
            (TOP, BOTTOM),
            "Latency (ms, lower is better): p50 solid, p99 light",
            &p50,
            Some(&p99),
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444" font-size="11">REST and gateway: one HTTP/1.1 keep-alive connection per caller; gRPC: {} shared HTTP/2 connections.</text>"##,
            W / 2.0,
            H - 30.0,
            a.grpc_channels
        );
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" fill="#444" font-size="11">The service layer alone, called in the process by the same callers: Bank::get_account {} req/s, Bank::transfer {} req/s. Each transfer moves 1 minor unit.</text>"##,
            W / 2.0,
            H - 14.0,
            self.get(Op::GetAccount, Transport::Service)
                .map_or("n/a".to_owned(), |s| thousands(s.throughput)),
            self.get(Op::Transfer, Transport::Service)
                .map_or("n/a".to_owned(), |s| thousands(s.throughput)),
        );
        let _ = writeln!(s, "</svg>");
        s
    }

    /// One bar panel at `x0`, `width` wide, between `top` and `bottom`: a group per operation, a bar per
    /// transport of `value`; with `high`, a lighter bar behind each reaching `high` (p99 behind p50).
    #[allow(clippy::too_many_arguments)]
    fn panel(
        &self,
        s: &mut String,
        x0: f64,
        width: f64,
        (top, bottom): (f64, f64),
        title: &str,
        value: &dyn Fn(Op, Transport) -> Option<f64>,
        high: Option<&dyn Fn(Op, Transport) -> Option<f64>>,
    ) {
        let max = Op::ALL
            .iter()
            .flat_map(|&op| CHARTED.map(move |t| (op, t)))
            .filter_map(|(op, t)| high.and_then(|h| h(op, t)).or_else(|| value(op, t)))
            .fold(0.0_f64, f64::max);
        let step = nice_step(max);
        let axis_max = (max * 1.12 / step).ceil() * step;
        let y = |v: f64| bottom - (v / axis_max) * (bottom - top);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-size="14" font-weight="bold">{}</text>"##,
            x0 + width / 2.0,
            top - 12.0,
            esc(title)
        );
        // Grid and axis labels.
        let mut tick = 0.0;
        while tick <= axis_max + step / 2.0 {
            let ty = y(tick);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{ty:.1}" x2="{}" y2="{ty:.1}" stroke="#e3e3e3"/><text x="{}" y="{:.1}" text-anchor="end" fill="#555" font-size="11">{}</text>"##,
                x0 + width,
                x0 - 6.0,
                ty + 4.0,
                if step >= 1.0 {
                    thousands(tick)
                } else {
                    format!("{tick:.1}")
                }
            );
            tick += step;
        }
        let _ = writeln!(
            s,
            r##"<line x1="{x0}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#333"/>"##,
            x0 + width
        );
        let group = width / Op::ALL.len() as f64;
        let bar = (group * 0.8 / CHARTED.len() as f64).min(56.0);
        let gap = bar * 0.2;
        let n = CHARTED.len() as f64;
        let bars_width = bar * n + gap * (n - 1.0);
        for (g, &op) in Op::ALL.iter().enumerate() {
            let gx = x0 + group * g as f64 + (group - bars_width) / 2.0;
            for (i, &transport) in CHARTED.iter().enumerate() {
                let bx = gx + (bar + gap) * i as f64;
                let cx = bx + bar / 2.0;
                let (solid, light) = transport.color();
                let Some(v) = value(op, transport) else {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{bx:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="none" stroke="#999" stroke-dasharray="4 3"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" fill="#777">n/a</text>"##,
                        bottom - 40.0,
                        40.0,
                        bottom - 16.0
                    );
                    continue;
                };
                let hv = high.and_then(|h| h(op, transport));
                if let Some(hv) = hv {
                    let _ = writeln!(
                        s,
                        r##"<rect x="{bx:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{light}"/><text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11">{hv:.1}</text>"##,
                        y(hv),
                        bottom - y(hv),
                        y(hv) - 4.0
                    );
                }
                let _ = writeln!(
                    s,
                    r##"<rect x="{bx:.1}" y="{:.1}" width="{bar:.1}" height="{:.1}" fill="{solid}"/>"##,
                    y(v),
                    bottom - y(v)
                );
                // Throughput bars carry their ratio to REST inside, at the foot.
                if let (None, Some(rest)) = (high, value(op, Transport::Rest))
                    && bottom - y(v) >= 18.0
                {
                    let _ = writeln!(
                        s,
                        r##"<text x="{cx:.1}" y="{:.1}" text-anchor="middle" font-size="11" fill="#fff">{:.2}x</text>"##,
                        bottom - 8.0,
                        v / rest
                    );
                }
                let label = if high.is_some() {
                    format!("{v:.1}")
                } else {
                    thousands(v)
                };
                // Above the solid bar, unless the light bar's label is too close: then inside it.
                let room = hv.is_none_or(|hv| y(v) - y(hv) >= 16.0);
                let (ly, fill) = if room {
                    (y(v) - 4.0, "#111")
                } else {
                    (y(v) + 13.0, "#fff")
                };
                let _ = writeln!(
                    s,
                    r##"<text x="{cx:.1}" y="{ly:.1}" text-anchor="middle" font-size="11" font-weight="bold" fill="{fill}">{label}</text>"##
                );
            }
            let lx = x0 + group * (g as f64 + 0.5);
            let _ = writeln!(
                s,
                r##"<text x="{lx:.1}" y="{:.1}" text-anchor="middle">{}</text><text x="{lx:.1}" y="{:.1}" text-anchor="middle" fill="#666" font-size="11">{}</text>"##,
                bottom + 20.0,
                esc(op.http()),
                bottom + 36.0,
                esc(op.rpc())
            );
        }
    }
}

/// A round grid step (1, 2 or 5 times a power of ten) giving about five lines up to `max`.
fn nice_step(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power)
}

fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn formatting() {
        assert_eq!(super::thousands(9945.4), "9,945");
        assert_eq!(super::thousands(123.0), "123");
        assert_eq!(super::thousands(1_234_567.0), "1,234,567");
        assert_eq!(super::nice_step(10_000.0), 2_000.0);
        assert_eq!(super::nice_step(22.0), 5.0);
        assert_eq!(super::nice_step(3.0), 1.0);
    }
}
