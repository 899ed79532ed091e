//! Transfer throughput of the service layer against pgbench, on the same database in the same run.
//!
//! For each run and each concurrency it measures, back to back:
//! - **service**: `Bank::transfer` from N tokio tasks, each a caller moving money out of its own account;
//! - **(a) pgbench, same statement**: `bench/sql/transfer.sql` (the store's statement) with `-M prepared`;
//! - **(b) pgbench tpcb-like**: pgbench's built-in TPC-B-like transaction.
//!
//! and prints a Markdown table of the medians and the ratios service/(a) and service/(b).

use std::time::Duration;

use clap::Parser;
use streambank_bench::ledger::{fresh_database, service_tps, warm_up};
use streambank_bench::{pgbench, stats::median};
use streambank_service::Bank;

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
    /// Transfer batches in flight at once (the service layer's group commit; see streambank_service::batch).
    #[arg(long, default_value_t = streambank_service::BatchOptions::default().executors)]
    executors: usize,
    /// The most transfers in one batch (1 turns group commit off: one transaction per transfer).
    #[arg(long, default_value_t = streambank_service::BatchOptions::default().max_batch)]
    max_batch: usize,
    /// Measure the service layer only (no pgbench), printing each run: for profiling.
    #[arg(long)]
    service_only: bool,
    /// Write bench/sql/transfer.sql from the store's statement and exit.
    #[arg(long)]
    write_script: bool,
}

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

    let max_concurrency = args.concurrency.iter().copied().max().unwrap_or(8);
    let (_, pool) = fresh_database(
        &args.database_url,
        "BENCH_DATABASE_URL",
        args.accounts,
        args.scale,
        u32::try_from(max_concurrency)?,
    )
    .await?;
    let bank = Bank::with_batching(
        pool.clone(),
        streambank_service::BatchOptions {
            executors: args.executors,
            max_batch: args.max_batch,
        },
    );
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
                service.push(s);
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
    let (batches, batched) = bank.stats().transfer_batches();
    pool.close().await;

    if args.service_only {
        // No reference ran, so there is no ratio to print.
        println!("| callers | service layer (tx/s) |");
        println!("|---:|---:|");
        for (concurrency, s, _, _) in rows {
            println!("| {concurrency} | {s:.0} |");
        }
    } else {
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
    }
    println!();
    println!(
        "Medians of {} runs of {} s each; {} accounts; pgbench scale {}; transient transfer retries: {retried}; \
         group commit: {} executors, batches of at most {}, {:.1} transfers per batch on average.",
        args.runs,
        args.seconds,
        args.accounts,
        args.scale,
        args.executors,
        args.max_batch,
        batched as f64 / batches.max(1) as f64
    );
    Ok(())
}

/// pgbench's arguments for `workload` (`-f script` or `-b builtin`), prepared statements, no vacuum,
/// `concurrency` clients on at most two threads for `seconds`.
fn pgbench_args(workload: [&str; 2], concurrency: usize, seconds: u64) -> Vec<String> {
    let mut v: Vec<String> = ["-n", "-M", "prepared", workload[0], workload[1]]
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

fn same_statement_args(args: &Args, concurrency: usize, script: &str) -> Vec<String> {
    let mut v = pgbench_args(["-f", script], concurrency, args.seconds);
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
    pgbench_args(["-b", "tpcb-like"], concurrency, seconds)
}
