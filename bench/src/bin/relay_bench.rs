//! The outbox relay under load, with Redis's own `XADD` rate as the reference.
//!
//! 1. **Backlog drain:** `--backlog` transfer-sized outbox rows are waiting; the relay publishes them in
//!    batches with `streambank_relay::drain`, as the leader does (each claim overlapping the previous
//!    batch's `XADD`s). Reported as events/s and as a ratio to
//!    `redis-benchmark -P 16` sending `XADD`s with the same fields to the same Redis in the same run, plus
//!    the process's peak RSS.
//! 2. **Commit-to-XADD latency:** a running relay (alone) while the service layer commits transfers at a
//!    steady `--rate` per second; latency is the stream entry id's timestamp (Redis's clock at `XADD`)
//!    minus the moment the transfer's commit returned, both on this machine's clock.
//! 3. **Commit-to-notification latency:** then a worker starts too (notifications, and emails to the SMTP
//!    catcher); once it has caught up, the same steady load runs again and each transfer's notification
//!    row's `created_at` is compared with the moment its commit returned.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use streambank_bench::ledger::{fresh_database, steady_load};
use streambank_bench::stats::percentile;
use streambank_events::{Stream, stream_key};
use streambank_service::Bank;

#[derive(Debug, Parser)]
#[command(
    about = "Outbox relay: backlog drain and commit-to-XADD latency, against redis-benchmark"
)]
struct Args {
    #[arg(
        long,
        env = "BENCH_RELAY_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streambank_bench_relay"
    )]
    database_url: String,
    #[command(flatten)]
    redis: streambank_config::Redis,
    #[arg(long, default_value_t = 200_000)]
    backlog: i64,
    /// Rows per claim and per pipelined XADD batch.
    #[arg(long, default_value_t = 1_000)]
    batch: i64,
    /// Transfers per second for the latency measurement.
    #[arg(long, default_value_t = 1_000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// The SMTP catcher the worker mails (maildev).
    #[arg(long, env = "SMTP_URL", default_value = "smtp://127.0.0.1:1025")]
    smtp_url: String,
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_, pool) =
        fresh_database(&args.database_url, "BENCH_RELAY_DATABASE_URL", 1_000, 0, 40).await?;
    // The drain publishes through a pool set up as the relay's own (asynchronous commit).
    let relay_pool = streambank_store::pool_options(4)
        .connect_with(streambank_relay::connect_options(&args.database_url)?)
        .await?;
    let client = redis::Client::open(args.redis.url.as_str())?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    let prefix = format!("bench-relay-{}", uuid::Uuid::new_v4().simple());

    // 1. Backlog drain.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
         SELECT gen_random_uuid(), 'transfer', i::text, 'transfer.completed',
                jsonb_build_object('transfer_id', i, 'from_account_id', 1, 'to_account_id', 2, 'from_owner_id', 1,
                                   'to_owner_id', 2, 'amount', 100, 'currency', 'USD'),
                now() + i * interval '1 microsecond'
         FROM generate_series(1, {}) AS i;
         ANALYZE outbox;",
        args.backlog
    )))
    .execute(&pool)
    .await?;
    let rss_before = peak_rss_mib();
    let started = Instant::now();
    let drained = streambank_relay::drain(
        &relay_pool,
        &mut redis,
        &prefix,
        args.batch,
        10_000_000,
        None,
        || false,
    )
    .await?;
    let drain_rate = drained as f64 / started.elapsed().as_secs_f64();
    let rss_after = peak_rss_mib();
    let reference = redis_benchmark(&args.redis.url, args.backlog, &prefix)?;
    let _: () = redis::cmd("DEL")
        .arg(stream_key(&prefix, Stream::Transfers))
        .arg(format!("{prefix}:redis-benchmark"))
        .query_async(&mut redis)
        .await?;

    // 2. Commit-to-XADD latency with a running relay.
    let config = streambank_relay::Config {
        database: streambank_config::Database::new(args.database_url.clone()),
        redis: streambank_config::Redis::new(args.redis.url.clone()),
        streams: streambank_config::Streams::new(prefix.clone()),
        telemetry: streambank_config::Telemetry::default(),
        health_addr: "127.0.0.1:0".parse()?,
        batch_size: 500,
        poll_interval: Duration::from_secs(1),
        retention: Duration::from_secs(7 * 86_400),
        max_stream_len: 10_000_000,
        min_replicas: 0,
        wait_timeout: std::time::Duration::from_secs(1),
    };
    let relay = streambank_relay::Relay::new(config)?;
    tokio::spawn(relay.clone().run(std::future::pending()));
    while !relay.is_leader() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let bank = Bank::new(pool.clone());
    // 2a. The relay alone: nothing else competes for the two cores but Postgres and the load.
    let committed = steady_load(&bank, args.rate, args.seconds).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream_key(&prefix, Stream::Transfers))
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await?;
    let mut latencies = Vec::new();
    for entry in &entries.ids {
        let xadd_ms: f64 = entry
            .id
            .split('-')
            .next()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(f64::NAN);
        let transfer: Option<i64> = entry
            .map
            .get("aggregate_id")
            .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            .and_then(|s| s.parse().ok());
        if let Some(commit_ms) = transfer.and_then(|t| committed.get(&t)) {
            // Entry ids have millisecond resolution; a negative difference is rounding, count it as 0.
            latencies.push(Duration::from_secs_f64(
                ((xadd_ms - commit_ms).max(0.0)) / 1000.0,
            ));
        }
    }
    latencies.sort();
    let achieved = committed.len() as f64 / args.seconds as f64;

    // 2b. Relay and worker: commit-to-notification row. The worker first catches up with what 2a
    // published, so that only this phase's transfers are timed.
    // A worker (notifications and emails to the SMTP catcher) runs too, for commit-to-notification.
    // The worker's defaults, as deployed, but for the health listener and the SMTP catcher.
    let worker = streambank_worker::Config {
        health_addr: "127.0.0.1:0".parse()?,
        smtp_url: args.smtp_url.clone(),
        ..streambank_worker::Config::new(
            args.database_url.clone(),
            args.redis.url.clone(),
            prefix.clone(),
        )
    };
    let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
    let worker_task = tokio::spawn(streambank_worker::run(worker, async move {
        let _ = worker_stopped.await;
    }));
    let count_notifications = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM notifications WHERE kind = 'transfer.completed'",
        )
        .fetch_one(&pool)
        .await
    };
    let catch_up_deadline = Instant::now() + Duration::from_secs(120);
    while count_notifications().await? < committed.len() as i64 * 2
        && Instant::now() < catch_up_deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = count_notifications().await?;
    let notified = steady_load(&bank, args.rate, args.seconds).await;
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    let expected = before + notified.len() as i64 * 2;
    while count_notifications().await? < expected && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_worker.send(());
    let _ = worker_task.await;
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT o.aggregate_id, extract(epoch FROM n.created_at)::float8 * 1000
         FROM notifications n JOIN outbox o ON o.id = n.event_id
         WHERE n.kind = 'transfer.completed'",
    )
    .fetch_all(&pool)
    .await?;
    let mut notify_latencies: Vec<Duration> = rows
        .iter()
        .filter_map(|(transfer, at)| {
            let commit = notified.get(&transfer.parse::<i64>().ok()?)?;
            Some(Duration::from_secs_f64((at - commit).max(0.0) / 1000.0))
        })
        .collect();
    notify_latencies.sort();
    let achieved_notified = notified.len() as f64 / args.seconds as f64;
    let _: () = redis::cmd("DEL")
        .arg(stream_key(&prefix, Stream::Transfers))
        .query_async(&mut redis)
        .await?;

    println!("| measurement | result | reference | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| drain of a {}-row backlog (batches of {}) | {drain_rate:.0} events/s | redis-benchmark XADD -P 16: {reference:.0}/s | {:.2}x |",
        args.backlog,
        args.batch,
        drain_rate / reference
    );
    println!(
        "| peak RSS of the process during the drain | {rss_after:.1} MiB (before: {rss_before:.1} MiB) | | |"
    );
    println!(
        "| commit-to-XADD latency at {:.0} transfers/s, relay alone ({} events matched) | {} | | |",
        achieved,
        latencies.len(),
        p50_p99(&latencies)
    );
    println!(
        "| commit-to-notification-row latency at {:.0} transfers/s, relay and worker ({} rows; the worker also emails each party) | {} | | |",
        achieved_notified,
        notify_latencies.len(),
        p50_p99(&notify_latencies)
    );
    Ok(())
}

/// "p50 1.2 ms, p99 3.4 ms" of some sorted latencies.
fn p50_p99(sorted: &[Duration]) -> String {
    let ms = |q: f64| percentile(sorted, q).as_secs_f64() * 1000.0;
    format!("p50 {:.1} ms, p99 {:.1} ms", ms(0.5), ms(0.99))
}

/// `redis-benchmark -P 16` sending `XADD`s with the relay's seven fields; returns requests per second.
fn redis_benchmark(redis_url: &str, n: i64, prefix: &str) -> anyhow::Result<f64> {
    let url = redis_url.trim_start_matches("redis://");
    let (host, port) = url
        .trim_end_matches('/')
        .split_once(':')
        .unwrap_or((url, "6379"));
    let key = format!("{prefix}:redis-benchmark");
    let output = std::process::Command::new("redis-benchmark")
        .args(["-h", host, "-p", port, "-n", &n.to_string(), "-P", "16", "-q"])
        .args(["XADD", &key, "*", "event_id", "0190c5f2-7e5a-7cc1-8f4e-000000000000", "event_type", "transfer.completed"])
        .args(["aggregate_type", "transfer", "aggregate_id", "123456", "occurred_at", "2026-11-25T17:00:00.000000Z", "traceparent", ""])
        .args(["payload", r#"{"amount": 100, "currency": "USD", "to_owner_id": 2, "transfer_id": 123456, "from_owner_id": 1, "to_account_id": 2, "from_account_id": 1}"#])
        .output()
        .context("cannot run redis-benchmark (Debian package redis-tools)")?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .collect::<Vec<_>>()
        .windows(3)
        .find(|w| w[1] == "requests" && w[2] == "per")
        .and_then(|w| w[0].parse().ok())
        .with_context(|| format!("no rate in redis-benchmark output: {text}"))
}
