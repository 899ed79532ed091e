//! REST, gRPC and the HTTP/JSON gateway side by side, in one run: throughput, latency, CPU and bytes
//! per call of `GET /v1/accounts/{id}` and `POST /v1/transfers` on each transport, with the service
//! layer called directly as the reference. What it measures and how is told in
//! `streambank_bench::transports`; this file is the command line and the order of the steps.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use streambank_bench::api;
use streambank_bench::transports::cpu::LOAD_THREAD;
use streambank_bench::transports::load::{Callers, Customer, compare_json};
use streambank_bench::transports::report::{Report, Settings};
use streambank_bench::transports::{Op, Transport, measure, proxy};
use streambank_service::Bank;

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
    let db = api::prepare(
        &args.database_url,
        "BENCH_TRANSPORTS_DATABASE_URL",
        args.accounts,
        args.concurrency,
    )
    .await?;
    db.pool.close().await;
    let listeners = api::start(&args.database_url, args.concurrency).await?;
    let addrs: BTreeMap<Transport, SocketAddr> = [
        (Transport::Rest, listeners.rest),
        (Transport::Grpc, listeners.grpc),
        (Transport::Gateway, listeners.gateway),
    ]
    .into();
    // Authentication is answered from the session cache once its invalidation listener is up.
    listeners.session_cache_live().await;
    // Everything a client does from here on (connections included) lives on the load runtime.
    load.spawn(drive(args, addrs, db.options))
        .await
        .context("the load generator panicked")?
}

/// The client side: logs in, connects, measures, counts bytes, reports.
async fn drive(
    args: Args,
    addrs: BTreeMap<Transport, SocketAddr>,
    options: sqlx::postgres::PgConnectOptions,
) -> anyhow::Result<()> {
    let database = options
        .get_database()
        .context("the benchmark URL names no database")?
        .to_owned();
    // The reference: the service layer with a pool of its own, as large as the API's.
    let pool = streambank_store::pool_options(u32::try_from(args.concurrency)?)
        .connect_with(options)
        .await
        .context("connecting to the benchmark database")?;
    let customers = api::log_in(addrs[&Transport::Rest], args.concurrency)
        .await?
        .into_iter()
        .map(Customer::new)
        .collect::<anyhow::Result<_>>()?;
    let mut callers = Callers::connect(
        &addrs,
        Bank::new(pool),
        customers,
        args.accounts,
        args.grpc_channels,
    )
    .await?;

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
        match callers.probe(transport).await {
            Ok(()) => transports.push(transport),
            Err(e) => {
                eprintln!("{} left out: {e:#}", transport.name());
                missing.push((transport, format!("{e:#}")));
            }
        }
    }
    anyhow::ensure!(!transports.is_empty(), "no transport answers");
    let customer = &callers.customers()[0];
    compare_json(&addrs, customer, &transports).await;

    let ops: Vec<Op> = Op::ALL
        .into_iter()
        .chain((!args.no_health).then_some(Op::Health))
        .collect();
    measure::warm_up(&callers, &ops, &transports).await?;
    let duration = Duration::from_secs(args.seconds);
    let mut series =
        measure::runs(&callers, &ops, &transports, duration, args.runs, &database).await?;
    let summaries = measure::summarise(&mut series);
    let wire = proxy::count(
        &addrs,
        &ops,
        &transports,
        customer,
        args.accounts,
        args.wire_calls,
    )
    .await?;

    let settings = Settings {
        concurrency: args.concurrency,
        grpc_channels: args.grpc_channels,
        runs: args.runs,
        seconds: args.seconds,
        wire_calls: args.wire_calls,
    };
    let report = Report {
        settings: &settings,
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
