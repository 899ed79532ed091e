//! How fast a worker drains the backlog an outage leaves behind, against what its dependency alone can do
//! for the same work, measured in the same run.
//!
//! While Postgres or the SMTP server is down, a group stops reading (`docs/events.md`): the backlog is
//! entries still in the stream, plus the few entries read before the outage was noticed, pending with a
//! consumer. Each phase below builds such a backlog of `transfer.completed` events (two recipients each)
//! and times one worker process draining it:
//!
//! 1. **Notification rows, unread backlog:** `read_once` until the stream is empty. Reference: the same
//!    `write_notifications` statements (64 events a statement, as the worker batches them) sent straight
//!    to Postgres, without Redis or the worker.
//! 2. **Notification rows, pending backlog:** a consumer reads the whole backlog and dies; a second
//!    worker takes it over (`sweep_once`, batches of 64) and handles it.
//! 3. **Notification emails, unread backlog:** one email per recipient, each claimed in Postgres, sent to
//!    the SMTP catcher and marked. Reference: the same number of emails sent straight to the catcher with
//!    the worker's mailer, 16 at a time (the worker's concurrency): the catcher's own accept rate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::StreamExt as _;
use streambank_bench::ledger::fresh_database;
use streambank_events::StreamEntry;
use streambank_store::consumers::{self, NotificationRows};
use streambank_worker::consumer::Handle;
use streambank_worker::handle::OnlyGroup;
use streambank_worker::mail::{Email, Mailer};
use streambank_worker::{Config, Group, Worker};

#[derive(Debug, Parser)]
#[command(
    about = "Worker drain after an outage: notification rows and emails, against Postgres and the SMTP catcher alone"
)]
struct Args {
    #[arg(
        long,
        env = "BENCH_DRAIN_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/streambank_bench_drain"
    )]
    database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The SMTP catcher (maildev).
    #[arg(long, env = "SMTP_URL", default_value = "smtp://127.0.0.1:1025")]
    smtp_url: String,
    /// Events in the notification-row backlogs.
    #[arg(long, default_value_t = 20_000)]
    events: i64,
    /// Events in the email backlog (two emails each).
    #[arg(long, default_value_t = 1_000)]
    email_events: i64,
}

/// A consumer that fails everything as an outage would (it dies right after).
#[derive(Debug)]
struct Down;

impl Handle for Down {
    fn handle<'a>(
        &'a self,
        _: Group,
        _: &'a StreamEntry,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()) })
    }
}

/// Writes `events` transfer events into the outbox and publishes them under a fresh prefix.
async fn backlog(
    pool: &sqlx::PgPool,
    redis: &mut redis::aio::MultiplexedConnection,
    events: i64,
) -> anyhow::Result<String> {
    let prefix = format!("bench-drain-{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
         SELECT gen_random_uuid(), 'transfer', i::text, 'transfer.completed',
                jsonb_build_object('transfer_id', i, 'from_account_id', i % 1000 + 1,
                                   'to_account_id', (i + 1) % 1000 + 1, 'from_owner_id', i % 1000 + 1,
                                   'to_owner_id', (i + 1) % 1000 + 1, 'amount', 100, 'currency', 'USD'),
                now() + i * interval '1 microsecond'
         FROM generate_series(1, {events}) AS i;"
    )))
    .execute(pool)
    .await?;
    streambank_relay::drain(pool, redis, &prefix, 1_000, 10_000_000, None, || false).await?;
    Ok(prefix)
}

fn worker(args: &Args, prefix: &str, handler: Arc<dyn Handle>) -> anyhow::Result<Worker> {
    let config = Config {
        health_addr: "127.0.0.1:0".parse()?,
        smtp_url: args.smtp_url.clone(),
        claim_min_idle: Duration::from_millis(100),
        ..Config::new(
            args.database_url.clone(),
            args.redis_url.clone(),
            prefix.to_owned(),
        )
    };
    Worker::new(config, handler)
}

/// A worker under `prefix` that handles `group` only, as the worker does.
fn handling(args: &Args, prefix: &str, group: Group) -> anyhow::Result<Worker> {
    let config = Config {
        smtp_url: args.smtp_url.clone(),
        ..Config::new(
            args.database_url.clone(),
            args.redis_url.clone(),
            prefix.to_owned(),
        )
    };
    let handlers = Arc::new(OnlyGroup(group, config.handlers()?));
    worker(args, prefix, handlers)
}

/// A worker handling `group` reads it under `prefix` until its stream is drained; returns entries per
/// second.
async fn drain_unread(args: &Args, prefix: &str, group: Group, events: i64) -> anyhow::Result<f64> {
    let worker = handling(args, prefix, group)?;
    let mut conn = worker.connection().await?;
    worker.ensure_groups(&mut conn).await?;
    let mut reader = worker.connection().await?;
    let started = Instant::now();
    let mut read = 0;
    loop {
        let n = worker
            .read_once(&mut reader, &mut conn, group, None)
            .await?;
        read += n;
        if n == 0 {
            break;
        }
    }
    anyhow::ensure!(read as i64 == events, "read {read} of {events}");
    Ok(read as f64 / started.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (_, pool) =
        fresh_database(&args.database_url, "BENCH_DRAIN_DATABASE_URL", 1_000, 0, 8).await?;
    let mut redis = redis::Client::open(args.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await?;

    // Reference for the rows: the worker's statement, 64 events at a time, straight to Postgres.
    let events: Vec<uuid::Uuid> = (0..args.events).map(|_| uuid::Uuid::new_v4()).collect();
    let started = Instant::now();
    for (n, chunk) in events.chunks(64).enumerate() {
        let mut rows = NotificationRows::default();
        for (i, event) in chunk.iter().enumerate() {
            let from = ((n * 64 + i) % 1000 + 1) as i64;
            rows.push(from, *event, "transfer.completed", "You sent 1.00 USD.");
            rows.push(
                from % 1000 + 1,
                *event,
                "transfer.completed",
                "You received 1.00 USD.",
            );
        }
        consumers::write_notifications(&pool, "reference", chunk, &rows).await?;
    }
    let rows_ceiling = args.events as f64 / started.elapsed().as_secs_f64();

    // 1. Unread backlog, notification rows.
    let prefix = backlog(&pool, &mut redis, args.events).await?;
    let unread_rate = drain_unread(&args, &prefix, Group::Notifications, args.events).await?;

    // 2. Pending backlog: a consumer reads everything, fails it, and is gone; another takes it over.
    let prefix2 = backlog(&pool, &mut redis, args.events).await?;
    let dying = worker(&args, &prefix2, Arc::new(Down))?;
    let mut conn = dying.connection().await?;
    dying.ensure_groups(&mut conn).await?;
    let mut reader = dying.connection().await?;
    while dying
        .read_once(&mut reader, &mut conn, Group::Notifications, None)
        .await?
        > 0
    {}
    tokio::time::sleep(Duration::from_millis(200)).await; // past claim_min_idle: it is dead
    let w2 = handling(&args, &prefix2, Group::Notifications)?;
    let mut conn2 = w2.connection().await?;
    let started = Instant::now();
    let mut handled = 0;
    while handled < args.events as usize {
        let n = w2.sweep_once(&mut conn2, Group::Notifications).await?;
        anyhow::ensure!(n > 0, "the takeover stalled at {handled}");
        handled += n;
    }
    let pending_rate = handled as f64 / started.elapsed().as_secs_f64();

    // Reference for the emails: the catcher's own accept rate, 16 at a time.
    let emails = (args.email_events * 2) as usize;
    let mailer = Mailer::new(&args.smtp_url, "StreamBank <no-reply@streambank.local>")?;
    let reference_event = uuid::Uuid::new_v4();
    let started = Instant::now();
    let sent: Vec<anyhow::Result<()>> = futures_util::stream::iter(0..emails)
        .map(|i| {
            let mailer = mailer.clone();
            async move {
                let to = format!("bench_{}@example.com", i % 1000 + 1);
                mailer
                    .send(Email {
                        event_id: reference_event,
                        kind: "transfer.completed",
                        to: &to,
                        subject: "StreamBank notification",
                        body: "Hello Bench,\n\nYou sent 1.00 USD.\n\nStreamBank\n",
                    })
                    .await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    sent.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    let smtp_ceiling = emails as f64 / started.elapsed().as_secs_f64();

    // 3. Unread backlog, notification emails.
    let prefix3 = backlog(&pool, &mut redis, args.email_events).await?;
    let email_events_rate = drain_unread(
        &args,
        &prefix3,
        Group::NotificationEmails,
        args.email_events,
    )
    .await?;
    let email_rate = email_events_rate * 2.0;
    let delivered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM email_deliveries WHERE state = 'sent'")
            .fetch_one(&pool)
            .await?;
    anyhow::ensure!(
        delivered as usize == emails,
        "{delivered} of {emails} emails marked sent"
    );

    for p in [&prefix, &prefix2, &prefix3] {
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{p}:*"))
            .query_async(&mut redis)
            .await?;
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(&keys).query_async(&mut redis).await?;
        }
    }

    println!("| phase | worker | reference (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| notification rows, unread backlog of {} events | {unread_rate:.0} events/s | {rows_ceiling:.0} events/s (the same statements straight to Postgres) | {:.2}x |",
        args.events,
        unread_rate / rows_ceiling
    );
    println!(
        "| notification rows, pending backlog taken over | {pending_rate:.0} events/s | {rows_ceiling:.0} events/s | {:.2}x |",
        pending_rate / rows_ceiling
    );
    println!(
        "| notification emails, unread backlog of {} events | {email_rate:.0} emails/s ({email_events_rate:.0} events/s) | {smtp_ceiling:.0} emails/s (maildev's accept rate, 16 at a time) | {:.2}x |",
        args.email_events,
        email_rate / smtp_ceiling
    );
    Ok(())
}
