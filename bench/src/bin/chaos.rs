//! The chaos harness (issue 19): real binaries, concurrent clients, random faults, then a checker.
//! See `streambank_bench::chaos` for the parts and `docs/reliability.md` for what it checks; run it with
//! `bench/run-chaos.sh`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use sqlx::postgres::PgPoolOptions;
use streambank_bench::chaos::check::{self, Check, Evidence};
use streambank_bench::chaos::clients::{self, Record, Samples};
use streambank_bench::chaos::faults::Campaign;
use streambank_bench::chaos::procs::Cluster;
use streambank_bench::chaos::settings::Args;
use streambank_bench::chaos::smtp::SmtpSink;
use streambank_bench::chaos::timeline::Timeline;
use streambank_bench::chaos::{quiesce, report, setup};
use tokio::sync::Mutex;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("chaos: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Sets up, runs and tears down; `Ok(passed)`.
async fn run(args: Args) -> anyhow::Result<bool> {
    let timeline = Arc::new(Timeline::new());
    let pid = std::process::id();
    let work_dir = args
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("streambank-chaos-{pid}")));
    std::fs::create_dir_all(&work_dir)?;
    let db = args
        .database
        .clone()
        .unwrap_or_else(|| format!("chaos_{pid}"));
    setup::drop_database(&args.postgres, &db).await?;
    let database_url = format!("{}/{db}", args.postgres);
    let sink = SmtpSink::start_new().await?;
    let cluster = Arc::new(Mutex::new(Cluster::new(
        &args,
        &work_dir,
        &database_url,
        sink.addr,
    )?));
    timeline.log(format!(
        "work dir {} (logs in logs/), database {db}, SMTP sink {}, binaries from {}",
        work_dir.display(),
        sink.addr,
        args.bin_dir().display()
    ));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let result = tokio::select! {
        r = campaign_and_check(&args, Arc::clone(&cluster), Arc::clone(&sink), Arc::clone(&timeline), &work_dir) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated")),
    };
    cluster.lock().await.stop_all().await;
    sink.stop().await;
    if args.keep_database {
        eprintln!("database {db} kept");
    } else if let Err(e) = setup::drop_database(&args.postgres, &db).await {
        eprintln!("chaos: dropping {db}: {e:#}");
    }
    result
}

async fn campaign_and_check(
    args: &Args,
    cluster: Arc<Mutex<Cluster>>,
    sink: Arc<SmtpSink>,
    timeline: Arc<Timeline>,
    work_dir: &std::path::Path,
) -> anyhow::Result<bool> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let (database_url, redis_url, prefix, api_addrs, partitions) = {
        let mut c = cluster.lock().await;
        c.start_redis().await?;
        c.bankctl(&["migrate"], &[]).await?;
        c.start_apps(&http).await?;
        (
            c.database_url.clone(),
            c.redis_url.clone(),
            c.prefix.clone(),
            c.api_addrs,
            c.partitions,
        )
    };
    timeline.log("redis, api, 2 relays and 2 workers up; setting up users");
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{database_url}?application_name=chaos-harness"))
        .await
        .context("connecting to the run's database")?;
    let world = {
        let c = cluster.lock().await;
        setup::populate(&c, &sink, &http, args.customers).await?
    };
    timeline.log(format!(
        "{} customers registered, verified, funded ({} cents); {} clients start",
        world.customers.len(),
        world.deposited,
        args.clients
    ));

    let record = Arc::new(Record::default());
    let samples = Arc::new(Samples::default());
    let stop_sampler = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn(clients::sample(
        pool.clone(),
        world.deposited,
        Arc::clone(&samples),
        Arc::clone(&stop_sampler),
        Arc::clone(&timeline),
    ));
    let crashes = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let watchdog = tokio::spawn(watch(
        Arc::clone(&cluster),
        Arc::clone(&crashes),
        Arc::clone(&timeline),
        Arc::clone(&stop_sampler),
    ));
    let dead_letters = Arc::new(quiesce::DeadLetters::default());
    let dlq_watch = tokio::spawn(quiesce::watch_dead_letters(
        redis_url.clone(),
        prefix.clone(),
        Arc::clone(&dead_letters),
        Arc::clone(&stop_sampler),
        Arc::clone(&timeline),
    ));
    let first_round_done = Arc::new(AtomicBool::new(false));
    let stop_faults = Arc::new(AtomicBool::new(false));
    let fault_errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let campaign = tokio::spawn(
        Campaign {
            cluster: Arc::clone(&cluster),
            sink: Arc::clone(&sink),
            admin: pool.clone(),
            http: http.clone(),
            timeline: Arc::clone(&timeline),
            args: args.clone(),
            first_round_done: Arc::clone(&first_round_done),
            stop: Arc::clone(&stop_faults),
            errors: Arc::clone(&fault_errors),
        }
        .run(),
    );
    let workload = tokio::spawn(clients::run(
        args.clients,
        args.seed,
        api_addrs,
        Arc::new(world.customers.clone()),
        Arc::clone(&record),
        Arc::clone(&timeline),
        Duration::from_secs(args.give_up_secs),
    ));

    // Until enough transfers are acknowledged and every fault kind ran, or time is up.
    let mut last_report = timeline.elapsed();
    let mut last_acked = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let acked = record.acked_count.load(Ordering::Relaxed);
        let all_faults = first_round_done.load(Ordering::Relaxed);
        if acked >= args.transfers && all_faults {
            timeline.log(format!(
                "{acked} transfers acknowledged and every fault ran: stopping"
            ));
            break;
        }
        if timeline.elapsed() >= args.client_deadline() {
            timeline.log(format!(
                "client time limit reached with {acked} transfers acknowledged"
            ));
            break;
        }
        if workload.is_finished() || campaign.is_finished() {
            break;
        }
        let now = timeline.elapsed();
        if now - last_report >= Duration::from_secs(10) {
            let rate = (acked - last_acked) as f64 / (now - last_report).as_secs_f64();
            timeline.log(format!("  {acked} transfers acknowledged ({rate:.0}/s)"));
            last_report = now;
            last_acked = acked;
        }
    }
    record.stop.store(true, Ordering::Relaxed);
    stop_faults.store(true, Ordering::Relaxed);
    workload.await.context("clients")??;
    let faults = campaign.await.context("fault campaign")??;
    timeline.log(format!(
        "clients and faults stopped ({} transfers acknowledged, {faults} faults); quiescing",
        record.acked_count.load(Ordering::Relaxed)
    ));
    cluster.lock().await.start_apps(&http).await?;

    let remaining = Duration::from_secs(args.time_limit)
        .saturating_sub(timeline.elapsed() + Duration::from_secs(15));
    let limit = Duration::from_secs(args.quiesce_secs).min(remaining.max(Duration::from_secs(10)));
    let (pipeline, quiesced, took) =
        quiesce::wait_idle(&pool, &redis_url, &prefix, partitions, limit, &timeline).await;
    timeline.log(format!(
        "{} after {:.1} s: {}",
        if quiesced { "at rest" } else { "NOT at rest" },
        took.as_secs_f64(),
        pipeline.describe()
    ));
    stop_sampler.store(true, Ordering::Relaxed);
    let _ = sampler.await;
    let _ = watchdog.await;
    let _ = dlq_watch.await;

    let crashes = crashes.lock().map(|c| c.clone()).unwrap_or_default();
    let evidence = Evidence {
        world: &world,
        record: &record,
        samples: &samples,
        mails: sink.mails(),
        pipeline,
        quiesced,
        quiesce_took: took,
        crashes,
        dead_lettered: dead_letters.lock().map(|d| d.clone()).unwrap_or_default(),
    };
    let mut conn = streambank_bus::Bus::open(&redis_url)?.connect().await?;
    let (mut checks, totals) = check::run(&pool, &mut conn, &prefix, &evidence).await?;
    checks.insert(
        0,
        Check {
            name: "every fault kind ran and enough transfers were acknowledged",
            ok: first_round_done.load(Ordering::Relaxed) && totals.acked as u64 >= args.transfers,
            detail: format!(
                "{faults} faults; {} of {} transfers",
                totals.acked, args.transfers
            ),
        },
    );
    let fault_errors = fault_errors.lock().map(|e| e.clone()).unwrap_or_default();
    checks.insert(
        1,
        Check {
            name: "every fault injected and undone without error",
            ok: fault_errors.is_empty(),
            detail: if fault_errors.is_empty() {
                "none failed".into()
            } else {
                fault_errors.join("; ")
            },
        },
    );
    let (mut text, summary) = report::render(&timeline, &record, &checks, &totals, faults);
    text.insert_str(0, &log_levels(&work_dir.join("logs")));
    println!("{text}\n{summary}");
    std::fs::write(work_dir.join("report.txt"), format!("{text}\n{summary}\n"))?;
    eprintln!("(report and logs in {})", work_dir.display());
    Ok(checks.iter().all(|c| c.ok))
}

/// Lines logged at ERROR by each process: a person reading the logs should find only what an operator
/// must look at (issue 19 #6), so this is reported (not checked: faults do cause real errors).
fn log_levels(dir: &std::path::Path) -> String {
    let mut out = String::from("\n== log lines at ERROR, by process\n");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut counts: Vec<(String, usize)> = entries
        .flatten()
        .filter_map(|e| {
            let text = std::fs::read(e.path()).ok()?;
            let errors = String::from_utf8_lossy(&text)
                .lines()
                .filter(|l| l.contains("ERROR"))
                .count();
            Some((e.file_name().to_string_lossy().into_owned(), errors))
        })
        .collect();
    counts.sort();
    for (name, n) in counts {
        out.push_str(&format!("{n:>8}  {name}\n"));
    }
    out
}

/// Every second: a process that exited although nobody killed it is a crash; it is recorded and
/// started again.
async fn watch(
    cluster: Arc<Mutex<Cluster>>,
    crashes: Arc<std::sync::Mutex<Vec<String>>>,
    timeline: Arc<Timeline>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut c = cluster.lock().await;
        let mut died = Vec::new();
        if let Some(status) = c.redis.exited() {
            died.push(format!("redis exited ({status})"));
            let _ = c.start_redis().await;
        }
        for proc in c.apps_mut() {
            if let Some(status) = proc.exited() {
                died.push(format!("{} exited ({status})", proc.name));
                let _ = proc.start();
            }
        }
        for d in died {
            timeline.log(format!("CRASH {d}; started again"));
            if let Ok(mut crashes) = crashes.lock() {
                crashes.push(d);
            }
        }
    }
}
