//! Issue 23's capacity figures: the outbox relay over 1, 2 and 4 partitions, on a lone Redis and on a
//! Redis Cluster (3 masters, 3 replicas), with and without `WAIT 1`, in one run.
//!
//! For each shape:
//! 1. one relay process leading every partition drains a backlog of outbox rows (events per second,
//!    from the first claim to an empty outbox);
//! 2. one worker process, reading every partition, drains what the relay published into notification
//!    rows (events per second, each event two rows; the worker's other groups read and acknowledge
//!    without acting, as in `drain-bench`);
//! 3. with both running, a steady load of transfers gives commit-to-`XADD` and commit-to-notification
//!    latencies.
//!
//! The reference is the first shape, one partition on a lone Redis (today's relay and worker),
//! measured in the same run; each drain is also given as a ratio to it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use streambank_bench::ledger::{prepare_database, steady_load};
use streambank_bench::stats::percentile;
use streambank_bus::Bus;
use streambank_config::partition_prefix;
use streambank_events::{Stream, stream_key};
use streambank_relay::Relay;
use streambank_service::Bank;
use streambank_worker::handle::OnlyGroup;
use streambank_worker::{Config as WorkerConfig, Group, Worker};

#[derive(Debug, Parser)]
#[command(
    about = "The relay over 1, 2 and 4 partitions, lone Redis against Redis Cluster, with and without WAIT"
)]
struct Args {
    #[arg(
        long,
        env = "BENCH_SCALE_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streambank_bench_scale"
    )]
    database_url: String,
    /// The lone Redis.
    #[command(flatten)]
    redis: streambank_config::Redis,
    /// The cluster's seed nodes (`scripts/engines.sh redis-cluster start`).
    #[arg(
        long,
        env = "REDIS_CLUSTER_NODES",
        default_value = "redis://127.0.0.1:17100,redis://127.0.0.1:17101,redis://127.0.0.1:17102"
    )]
    cluster_url: String,
    /// Outbox rows per drain.
    #[arg(long, default_value_t = 200_000)]
    backlog: i64,
    /// Transfers per second for the latency measurement.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rows per claim and per pipelined XADD batch.
    #[arg(long, default_value_t = 500)]
    batch: i64,
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    cluster: bool,
    partitions: u16,
    min_replicas: u32,
}

impl Shape {
    fn name(self) -> String {
        format!(
            "{}, {} partition{}, {}",
            if self.cluster {
                "Redis Cluster 3+3"
            } else {
                "lone Redis"
            },
            self.partitions,
            if self.partitions == 1 { "" } else { "s" },
            if self.min_replicas > 0 {
                "WAIT 1"
            } else {
                "no WAIT"
            }
        )
    }
}

const SHAPES: [Shape; 8] = [
    Shape {
        cluster: false,
        partitions: 1,
        min_replicas: 0,
    },
    Shape {
        cluster: false,
        partitions: 2,
        min_replicas: 0,
    },
    Shape {
        cluster: false,
        partitions: 4,
        min_replicas: 0,
    },
    Shape {
        cluster: true,
        partitions: 2,
        min_replicas: 0,
    },
    Shape {
        cluster: true,
        partitions: 2,
        min_replicas: 1,
    },
    Shape {
        cluster: true,
        partitions: 4,
        min_replicas: 0,
    },
    Shape {
        cluster: true,
        partitions: 4,
        min_replicas: 1,
    },
    Shape {
        cluster: true,
        partitions: 8,
        min_replicas: 1,
    },
];

struct Figures {
    drain_per_s: f64,
    worker_per_s: f64,
    xadd: Latency,
    notified: Latency,
}

/// The median and 99th percentile of some latencies, in milliseconds, and how many there were.
struct Latency {
    p50_ms: f64,
    p99_ms: f64,
    samples: usize,
}

impl Latency {
    fn of(mut latencies: Vec<Duration>) -> Self {
        latencies.sort();
        Self {
            p50_ms: percentile(&latencies, 0.50).as_secs_f64() * 1000.0,
            p99_ms: percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
            samples: latencies.len(),
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options: PgConnectOptions = args
        .database_url
        .parse()
        .context("BENCH_SCALE_DATABASE_URL")?;
    let mut rows = Vec::new();
    for shape in SHAPES {
        prepare_database(&options, &args.database_url, 1_000, 0).await?;
        let pool = streambank_store::pool_options(40)
            .connect_with(options.clone())
            .await?;
        let figures = measure(&args, &pool, shape).await?;
        eprintln!(
            "{}: relay drain {:.0} events/s, worker drain {:.0} events/s, \
             commit-to-XADD p50 {:.1} ms p99 {:.1} ms ({} samples), \
             commit-to-notification p50 {:.1} ms p99 {:.1} ms ({} samples)",
            shape.name(),
            figures.drain_per_s,
            figures.worker_per_s,
            figures.xadd.p50_ms,
            figures.xadd.p99_ms,
            figures.xadd.samples,
            figures.notified.p50_ms,
            figures.notified.p99_ms,
            figures.notified.samples,
        );
        rows.push((shape, figures));
        pool.close().await;
    }
    let reference = &rows[0].1;
    println!(
        "| shape | relay drain (events/s) | of the reference | worker drain (events/s) | of the reference | commit-to-XADD p50 / p99 (ms) | commit-to-notification p50 / p99 (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (shape, f) in &rows {
        println!(
            "| {} | {:.0} | {:.2}x | {:.0} | {:.2}x | {:.1} / {:.1} | {:.1} / {:.1} |",
            shape.name(),
            f.drain_per_s,
            f.drain_per_s / reference.drain_per_s,
            f.worker_per_s,
            f.worker_per_s / reference.worker_per_s,
            f.xadd.p50_ms,
            f.xadd.p99_ms,
            f.notified.p50_ms,
            f.notified.p99_ms,
        );
    }
    println!();
    println!(
        "One relay process and one worker process, each over every partition; backlog {} rows, relay batches of {}; \
         latencies under {} transfers/s for {} s with both running ({} to {} samples each). Reference: the first row, in the same run.",
        args.backlog,
        args.batch,
        args.rate,
        args.seconds,
        rows.iter()
            .map(|(_, f)| f.xadd.samples.min(f.notified.samples))
            .min()
            .unwrap_or(0),
        rows.iter()
            .map(|(_, f)| f.xadd.samples.max(f.notified.samples))
            .max()
            .unwrap_or(0),
    );
    Ok(())
}

async fn measure(args: &Args, pool: &PgPool, shape: Shape) -> anyhow::Result<Figures> {
    let prefix = format!("bench-scale-{}", uuid::Uuid::new_v4().simple());
    let url = if shape.cluster {
        &args.cluster_url
    } else {
        &args.redis.url
    };
    let mut streams = streambank_config::Streams::new(prefix.clone());
    streams.partitions = shape.partitions;
    let config = streambank_relay::Config {
        database: streambank_config::Database::new(args.database_url.clone()),
        redis: streambank_config::Redis::new(url.clone()),
        streams,
        telemetry: streambank_config::Telemetry::default(),
        health_addr: "127.0.0.1:0".parse()?,
        batch_size: args.batch,
        poll_interval: Duration::from_secs(1),
        retention: Duration::from_secs(7 * 86_400),
        max_stream_len: 10_000_000,
        min_replicas: shape.min_replicas,
        wait_timeout: Duration::from_secs(1),
    };

    // 1. The relay drains a backlog of transfer events from 1,000 accounts (so every partition has its
    //    share).
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
         SELECT gen_random_uuid(), 'transfer', i::text, 'transfer.completed',
                jsonb_build_object('transfer_id', i, 'from_account_id', i % 1000 + 1,
                                   'to_account_id', (i + 1) % 1000 + 1, 'from_owner_id', i % 1000 + 1,
                                   'to_owner_id', (i + 1) % 1000 + 1, 'amount', 100, 'currency', 'USD'),
                now() + i * interval '1 microsecond'
         FROM generate_series(1, {}) AS i;
         ANALYZE outbox;",
        args.backlog
    )))
    .execute(pool)
    .await?;
    let relay = Relay::new(config)?;
    let started = Instant::now();
    let task = tokio::spawn(relay.clone().run(std::future::pending()));
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
                .fetch_one(pool)
                .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "{left} rows left after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_per_s = args.backlog as f64 / started.elapsed().as_secs_f64();

    // 2. A worker drains what the relay published into notification rows, two per event.
    let mut worker_streams = streambank_config::Streams::new(prefix.clone());
    worker_streams.partitions = shape.partitions;
    let mut worker_config =
        WorkerConfig::new(args.database_url.clone(), url.clone(), prefix.clone());
    worker_config.streams = worker_streams;
    worker_config.health_addr = "127.0.0.1:0".parse()?;
    let handlers = Arc::new(OnlyGroup(Group::Notifications, worker_config.handlers()?));
    let worker = Worker::new(worker_config, handlers)?;
    let notifications = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM notifications")
            .fetch_one(pool)
            .await
    };
    let started = Instant::now();
    let worker_task = tokio::spawn(worker.run(std::future::pending()));
    while notifications().await? < 2 * args.backlog {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "{} of {} notification rows after 300 s",
            notifications().await?,
            2 * args.backlog
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let worker_per_s = args.backlog as f64 / started.elapsed().as_secs_f64();

    // 3. Commit-to-XADD and commit-to-notification latencies under a steady load of transfers, on
    //    emptied streams.
    let bus = Bus::open(url)?;
    let mut conn = bus.connect().await?;
    for p in 0..shape.partitions {
        let key = stream_key(
            &partition_prefix(&prefix, shape.partitions, p),
            Stream::Transfers,
        );
        let _: () = redis::cmd("XTRIM")
            .arg(&key)
            .arg("MAXLEN")
            .arg(0)
            .query_async(&mut conn)
            .await?;
    }
    let bank = Bank::new(pool.clone());
    let before = notifications().await?;
    let last_row: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM notifications")
        .fetch_one(pool)
        .await?;
    let committed = steady_load(&bank, args.rate, args.seconds).await;
    let expected = before + 2 * i64::try_from(committed.len())?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while notifications().await? < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker_task.abort();
    let mut latencies = Vec::new();
    for p in 0..shape.partitions {
        let key = stream_key(
            &partition_prefix(&prefix, shape.partitions, p),
            Stream::Transfers,
        );
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut conn)
            .await?;
        for entry in &entries.ids {
            let xadd_ms: f64 = entry
                .id
                .split('-')
                .next()
                .and_then(|ms| ms.parse().ok())
                .unwrap_or(f64::NAN);
            let field = |name: &str| {
                entry
                    .map
                    .get(name)
                    .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
            };
            let transfer: Option<i64> = field("aggregate_id").and_then(|s| s.parse().ok());
            // From the writing transaction's start (`occurred_at`, microseconds) to the XADD (the
            // entry id's milliseconds): the commit and the relay's pick-up, as the relay's own
            // `relay_publish_lag_seconds` counts it. Only the steady load's transfers count.
            let started_ms = field("occurred_at")
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.timestamp_micros() as f64 / 1000.0);
            if let (Some(_), Some(started_ms)) =
                (transfer.and_then(|t| committed.get(&t)), started_ms)
            {
                latencies.push(Duration::from_secs_f64(
                    (xadd_ms - started_ms).max(0.0) / 1000.0,
                ));
            }
        }
        let _: () = redis::cmd("UNLINK")
            .arg(&key)
            .query_async(&mut conn)
            .await?;
    }
    task.abort();
    let notified: Vec<(String, f64)> = sqlx::query_as(
        "SELECT o.aggregate_id, extract(epoch FROM n.created_at)::float8 * 1000
         FROM notifications n JOIN outbox o ON o.id = n.event_id
         WHERE n.id > $1",
    )
    .bind(last_row)
    .fetch_all(pool)
    .await?;
    let notify_latencies = notified
        .iter()
        .filter_map(|(transfer, at)| {
            let commit = committed.get(&transfer.parse::<i64>().ok()?)?;
            Some(Duration::from_secs_f64((at - commit).max(0.0) / 1000.0))
        })
        .collect();
    Ok(Figures {
        drain_per_s,
        worker_per_s,
        xadd: Latency::of(latencies),
        notified: Latency::of(notify_latencies),
    })
}
