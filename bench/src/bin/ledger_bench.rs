//! Transfer throughput of the service layer against pgbench, on the same database in the same run.
//!
//! For each run and each concurrency it measures, back to back:
//! - **service**: `Bank::transfer` from N tokio tasks, each a caller moving money out of its own account;
//! - **(a) pgbench, same statement**: `bench/sql/transfer.sql` (the store's statement) with `-M prepared`;
//! - **(b) pgbench tpcb-like**: pgbench's built-in TPC-B-like transaction.
//!
//! and prints a Markdown table of the medians and the ratios service/(a) and service/(b).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rand::Rng as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use streambank_bench::{pgbench, stats::median};
use streambank_service::{Bank, Caller, Role, TransferRequest};

#[derive(Debug, Parser)]
#[command(about = "Service-layer transfer throughput against pgbench on the same database")]
struct Args {
    /// The benchmark database; it is dropped and created again.
    #[arg(
        long,
        env = "BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streambank_bench"
    )]
    database_url: String,
    /// Accounts to spread transfers over (one owner each).
    #[arg(long, default_value_t = 1_000)]
    accounts: i64,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Runs; the report gives medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent callers (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    concurrency: Vec<usize>,
    /// pgbench scale factor for tpcb-like (branches; at least the largest concurrency avoids a
    /// single-row hot spot that would flatter us).
    #[arg(long, default_value_t = 32)]
    scale: u32,
    /// Measure the service layer only (no pgbench), printing each run: for profiling.
    #[arg(long)]
    service_only: bool,
    /// Write bench/sql/transfer.sql from the store's statement and exit.
    #[arg(long)]
    write_script: bool,
}

const OPENING_BALANCE: i64 = 1_000_000_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let script_path = concat!(env!("CARGO_MANIFEST_DIR"), "/sql/transfer.sql");
    if args.write_script {
        std::fs::write(
            script_path,
            pgbench::transfer_script(pgbench::STORE_TRANSFER_SQL),
        )?;
        println!("wrote {script_path}");
        return Ok(());
    }

    let options: PgConnectOptions = args.database_url.parse().context("BENCH_DATABASE_URL")?;
    prepare_database(&options, &args).await?;
    let max_concurrency = args.concurrency.iter().copied().max().unwrap_or(8);
    let pool = streambank_store::pool_options(u32::try_from(max_concurrency)?)
        .connect_with(options.clone())
        .await?;
    let bank = Bank::new(pool.clone());
    warm_up(&bank, &pool, args.accounts).await?;

    let mut rows = Vec::new();
    for &concurrency in &args.concurrency {
        let (mut service, mut same_sql, mut tpcb) = (Vec::new(), Vec::new(), Vec::new());
        for run in 1..=args.runs {
            let secs = args.seconds;
            let s =
                service_tps(&bank, args.accounts, concurrency, Duration::from_secs(secs)).await?;
            if args.service_only {
                eprintln!("c={concurrency} run {run}: service {s:.0} tps");
                continue;
            }
            let a = pgbench::run(
                &args.database_url,
                &same_statement_args(&args, concurrency, script_path),
            )?;
            let b = pgbench::run(&args.database_url, &tpcb_args(concurrency, secs))?;
            eprintln!(
                "c={concurrency} run {run}: service {s:.0} tps, pgbench same statement {a:.0} tps, pgbench tpcb-like {b:.0} tps"
            );
            service.push(s);
            same_sql.push(a);
            tpcb.push(b);
        }
        rows.push((
            concurrency,
            median(&service),
            median(&same_sql),
            median(&tpcb),
        ));
    }
    let retried = bank.stats().transfers_retried();
    pool.close().await;

    println!(
        "| callers | service layer (tx/s) | (a) pgbench, same statement, -M prepared (tx/s) | (b) pgbench tpcb-like (tx/s) | service / (a) | service / (b) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    for (concurrency, s, a, b) in rows {
        println!(
            "| {concurrency} | {s:.0} | {a:.0} | {b:.0} | {:.2}x | {:.2}x |",
            s / a,
            s / b
        );
    }
    println!();
    println!(
        "Medians of {} runs of {} s each; {} accounts; pgbench scale {}; transient transfer retries: {retried}.",
        args.runs, args.seconds, args.accounts, args.scale
    );
    Ok(())
}

fn same_statement_args(args: &Args, concurrency: usize, script: &str) -> Vec<String> {
    let mut v: Vec<String> = ["-n", "-M", "prepared", "-f", script]
        .map(String::from)
        .into();
    v.extend([
        "-c".into(),
        concurrency.to_string(),
        "-j".into(),
        concurrency.min(2).to_string(),
    ]);
    v.extend(["-T".into(), args.seconds.to_string()]);
    for define in [
        format!("naccounts={}", args.accounts),
        "currency=USD".into(),
        "aggregate_type=transfer".into(),
        "event_type=transfer.completed".into(),
    ] {
        v.extend(["-D".into(), define]);
    }
    v
}

fn tpcb_args(concurrency: usize, seconds: u64) -> Vec<String> {
    let mut v: Vec<String> = ["-n", "-M", "prepared", "-b", "tpcb-like"]
        .map(String::from)
        .into();
    v.extend([
        "-c".into(),
        concurrency.to_string(),
        "-j".into(),
        concurrency.min(2).to_string(),
    ]);
    v.extend(["-T".into(), seconds.to_string()]);
    v
}

/// Runs transfers for a few seconds, then ANALYZEs. Without it the first connections plan their
/// foreign-key checks while `transfers` is empty (a sequential scan looks cheapest there) and keep those
/// plans until the table is next analyzed, so every later transfer scans a growing table: the first
/// minutes of a fresh database are slow for everyone, pgbench included. ANALYZE invalidates those plans
/// in every backend.
async fn warm_up(bank: &Bank, pool: &PgPool, accounts: i64) -> anyhow::Result<()> {
    service_tps(bank, accounts, 4, Duration::from_secs(2)).await?;
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Transfers per second through `Bank::transfer` with `concurrency` callers for `duration`.
async fn service_tps(
    bank: &Bank,
    accounts: i64,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let bank = bank.clone();
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let (from, to, amount) = {
                    let mut rng = rand::rng();
                    let from = rng.random_range(1..=accounts);
                    let mut to = rng.random_range(1..accounts);
                    if to >= from {
                        to += 1;
                    }
                    (from, to, rng.random_range(1..=100))
                };
                // Account i belongs to user i (see `prepare_database`).
                let caller = Caller {
                    user_id: from,
                    role: Role::Customer,
                };
                let request = TransferRequest {
                    from_account_id: from,
                    to_account_id: to,
                    amount,
                    currency: "USD",
                };
                bank.transfer(caller, request).await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// Drops and creates the benchmark database, migrates it, gives user `i` the USD account `i` with a
/// large opening deposit, and initialises pgbench's tables in the same database.
async fn prepare_database(options: &PgConnectOptions, args: &Args) -> anyhow::Result<()> {
    let name = options
        .get_database()
        .context("the benchmark URL names no database")?
        .to_owned();
    anyhow::ensure!(
        name.contains("bench"),
        "refusing to drop {name:?}: the benchmark database name must contain \"bench\""
    );
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await?;

    let pool: PgPool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await?;
    streambank_store::MIGRATOR.run(&pool).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (username, email, full_name, password_hash)
           SELECT 'bench_' || i, 'bench_' || i || '@example.com', 'Bench ' || i, 'not-a-login'
           FROM generate_series(1, {n}) AS i;
         INSERT INTO accounts (owner_id, currency, balance)
           SELECT i, 'USD', {OPENING_BALANCE} FROM generate_series(1, {n}) AS i;
         INSERT INTO entries (account_id, amount, deposited_by)
           SELECT i, {OPENING_BALANCE}, 1 FROM generate_series(1, {n}) AS i;
         ANALYZE;",
        n = args.accounts
    )))
    .execute(&pool)
    .await?;
    let mismatched: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE id <> owner_id")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(mismatched == 0, "account ids must equal owner ids");
    pool.close().await;

    let init: Vec<String> = ["-i", "-q", "-s", &args.scale.to_string()]
        .map(String::from)
        .into();
    let output = std::process::Command::new("pgbench")
        .args(&init)
        .arg(&args.database_url)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "pgbench -i failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
