//! The event pipeline's faults and their repair, as an operator meets them: the relay killed in the middle
//! of a drain and started again, then Redis emptied and `bankctl outbox republish` run (the real binary).
//! After each, every notification row exists exactly once.
//!
//! Redis: the relay test owns logical database 9 of `REDIS_URL`'s server and empties it with `FLUSHDB`,
//! which is `FLUSHALL` for everything the test wrote without touching the streams of tests running
//! beside it (they use database 0, as the dead-letter test does, under a prefix of its own).

use std::sync::Arc;
use std::time::{Duration, Instant};

use streambank_events::{Stream, stream_key};
use streambank_service::Bank;
use streambank_testkit::{TestDb, fixtures};
use streambank_worker::handle::OnlyGroup;
use streambank_worker::{Group, Worker};

use crate::common::bankctl_ok;

const EVENTS: i64 = 3_000;

fn redis_url() -> String {
    let base = streambank_testkit::redis_url();
    // Same server, database 9.
    let server = base.trim_end_matches('/');
    let server = match server.rsplit_once('/') {
        Some((head, db)) if !head.ends_with('/') && db.chars().all(|c| c.is_ascii_digit()) => head,
        _ => server,
    };
    format!("{server}/9")
}

async fn redis() -> redis::aio::MultiplexedConnection {
    streambank_testkit::redis_at(&redis_url()).await
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&db.pool)
        .await
        .expect(sql)
}

async fn xlen(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    redis::cmd("XLEN")
        .arg(key)
        .query_async(redis)
        .await
        .expect("XLEN")
}

async fn wait_until_published(db: &TestDb) {
    let started = Instant::now();
    while count(db, "SELECT count(*) FROM outbox WHERE published_at IS NULL").await > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the relay did not publish the backlog"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `EVENTS` transfer events between `ann` and `bob` waiting in the outbox (the other rows, from the
/// users' creation, go to the users stream).
async fn a_backlog_of_transfers(db: &TestDb, ann: i64, bob: i64) {
    sqlx::query(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
         SELECT gen_random_uuid(), 'transfer', i::text, 'transfer.completed',
                jsonb_build_object('transfer_id', i, 'from_account_id', 1, 'to_account_id', 2,
                                   'from_owner_id', $1::bigint, 'to_owner_id', $2::bigint,
                                   'amount', 100, 'currency', 'USD'),
                now() + i * interval '1 microsecond'
         FROM generate_series(1, $3::bigint) AS i",
    )
    .bind(ann)
    .bind(bob)
    .bind(EVENTS)
    .execute(&db.pool)
    .await
    .expect("backlog");
}

/// The relay, on this test's database and Redis database, in batches of 10.
fn relay_config(db: &TestDb, prefix: &str) -> streambank_relay::Config {
    streambank_relay::Config {
        database: streambank_config::Database::new(db.url.clone()),
        redis: streambank_config::Redis::new(redis_url()),
        streams: streambank_config::Streams::new(prefix.to_owned()),
        telemetry: streambank_config::Telemetry::default(),
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        batch_size: 10,
        poll_interval: Duration::from_millis(200),
        retention: Duration::from_secs(7 * 86_400),
        max_stream_len: 1_000_000,
        min_replicas: 0,
        wait_timeout: std::time::Duration::from_secs(1),
    }
}

/// Kills a relay mid-drain: its task is aborted as soon as the first entries reach `key`, wherever it
/// is (between a claim and its XADDs, or between the XADDs and the commit), with rows still to
/// publish.
async fn kill_a_relay_mid_drain(
    config: &streambank_relay::Config,
    db: &TestDb,
    conn: &mut redis::aio::MultiplexedConnection,
    key: &str,
) {
    let relay = streambank_relay::Relay::new(config.clone()).expect("relay");
    let task = tokio::spawn(relay.run(std::future::pending()));
    let started = Instant::now();
    while xlen(conn, key).await == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "nothing published"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    task.abort();
    let _ = task.await;
    let left = count(db, "SELECT count(*) FROM outbox WHERE published_at IS NULL").await;
    assert!(
        left > 0,
        "the relay was killed with rows still to publish (it had published them all)"
    );
}

/// Runs a relay until the outbox has nothing left to publish, then stops it.
async fn relay_until_published(config: &streambank_relay::Config, db: &TestDb) {
    let relay = streambank_relay::Relay::new(config.clone()).expect("relay");
    let task = tokio::spawn(relay.run(std::future::pending()));
    wait_until_published(db).await;
    task.abort();
    let _ = task.await;
}

/// A worker with the real handlers of the `notifications` group, drained once; returns how many
/// entries it read. The email groups acknowledge without sending (the emails' exactly-once is
/// `pipeline.rs`'s business, and 6,000 emails would only slow this test down).
async fn drain_a_new_worker(db: &TestDb, prefix: &str) -> usize {
    let config = streambank_worker::Config {
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        ..streambank_worker::Config::new(db.url.clone(), redis_url(), prefix.to_owned())
    };
    let handlers = OnlyGroup(Group::Notifications, config.handlers().expect("handlers"));
    let worker = Worker::new(config, Arc::new(handlers)).expect("worker");
    worker.drain().await.expect("drain")
}

/// `bankctl outbox republish --since` an hour ago, which names every retained event.
async fn republish_with_bankctl(db: &TestDb) {
    let since = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let stdout = bankctl_ok(&db.url, &["outbox", "republish", "--since", &since], &[]);
    let retained = count(db, "SELECT count(*) FROM outbox").await;
    assert!(retained > EVENTS, "the transfers and the users' events");
    assert!(
        stdout.starts_with(&format!("{retained} event(s) since")),
        "every retained event: {stdout}"
    );
}

async fn flushdb(conn: &mut redis::aio::MultiplexedConnection) {
    let _: () = redis::cmd("FLUSHDB")
        .query_async(conn)
        .await
        .expect("FLUSHDB");
}

#[tokio::test]
async fn a_killed_relay_and_a_flushed_redis_leave_every_notification_once() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let ann = fixtures::customer(&bank, "ann").await.user_id;
    let bob = fixtures::customer(&bank, "bob").await.user_id;
    a_backlog_of_transfers(&db, ann, bob).await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let key = stream_key(&prefix, Stream::Transfers);
    let mut conn = redis().await;
    let relay = relay_config(&db, &prefix);
    let once = "SELECT count(*) FROM notifications";

    // 1. The relay dies mid-drain. Started again, it publishes the rest (and, possibly, a batch it had
    //    sent but not marked).
    kill_a_relay_mid_drain(&relay, &db, &mut conn, &key).await;
    relay_until_published(&relay, &db).await;
    assert!(xlen(&mut conn, &key).await >= EVENTS);
    drain_a_new_worker(&db, &prefix).await;
    assert_eq!(
        count(&db, once).await,
        2 * EVENTS,
        "one row per party per event"
    );

    // 2. Redis loses everything; the operator republishes the retained outbox with bankctl.
    flushdb(&mut conn).await;
    assert_eq!(xlen(&mut conn, &key).await, 0);
    republish_with_bankctl(&db).await;
    relay_until_published(&relay, &db).await;
    assert_eq!(xlen(&mut conn, &key).await, EVENTS, "republished once each");

    // A new worker (the groups went with the flush and start again at the beginning) handles every
    // event again; nothing changes.
    assert!(drain_a_new_worker(&db, &prefix).await >= EVENTS as usize);
    assert_eq!(count(&db, once).await, 2 * EVENTS, "still once");
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM processed_events WHERE consumer = 'notifications'"
        )
        .await,
        EVENTS
    );
    let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("XINFO");
    for group in groups {
        assert_eq!(
            group.get("pending"),
            Some(&redis::Value::Int(0)),
            "nothing pending: {group:?}"
        );
    }
    flushdb(&mut conn).await;
}

/// `bankctl args` on the dead-letter test's database and the shared Redis database.
fn run_bankctl(db: &TestDb, args: &[&str]) -> String {
    let redis = streambank_testkit::redis_url();
    bankctl_ok(&db.url, args, &[("REDIS_URL", redis.as_str())])
}

#[tokio::test]
async fn dead_letters_outlive_redis_and_are_replayed_from_postgres() {
    let db = TestDb::new().await;
    let prefix = format!("dlq-{}", uuid::Uuid::new_v4().simple());
    // Keys of its own on the shared database: database 9 is emptied by the other test here.
    let mut conn = streambank_testkit::redis().await;
    let config = streambank_worker::Config {
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        ..streambank_worker::Config::new(
            db.url.clone(),
            streambank_testkit::redis_url(),
            prefix.clone(),
        )
    };
    let worker = config.build().expect("worker");
    worker.drain().await.expect("the groups exist");
    // Two entries no worker can ever handle: one that is not an event, one whose payload is broken.
    let key = stream_key(&prefix, Stream::Users);
    let event_id = uuid::Uuid::new_v4().to_string();
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("hello")
        .arg("world")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("event_id")
        .arg(&event_id)
        .arg("event_type")
        .arg("user.registered")
        .arg("aggregate_type")
        .arg("user")
        .arg("aggregate_id")
        .arg("1")
        .arg("occurred_at")
        .arg("2026-12-06T00:00:00.000000Z")
        .arg("traceparent")
        .arg("")
        .arg("payload")
        .arg("not json")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    worker.drain().await.expect("drain");
    assert_eq!(
        count(&db, "SELECT count(*) FROM dead_letters").await,
        2,
        "a permanent failure is dead-lettered at once"
    );

    // Redis loses everything of this installation.
    streambank_testkit::delete_keys_under(&mut conn, &prefix).await;

    let listed = run_bankctl(&db, &["dlq", "list"]);
    assert_eq!(listed.lines().count(), 2, "{listed}");
    let line = listed
        .lines()
        .find(|l| l.contains(&event_id))
        .unwrap_or_else(|| panic!("the broken event is listed: {listed}"));
    assert!(line.contains("group=email-verification"), "{line}");
    assert!(line.contains("error: "), "{line}");
    let id = line.split_whitespace().next().expect("an id");

    let replayed = run_bankctl(&db, &["dlq", "replay", id]);
    assert!(
        replayed.starts_with(&format!("replayed dead letter {id} onto {key}")),
        "{replayed}"
    );
    assert_eq!(
        xlen(&mut conn, &key).await,
        1,
        "the entry is back on its stream"
    );
    let listed = run_bankctl(&db, &["dlq", "list"]);
    assert_eq!(
        listed.lines().count(),
        1,
        "a replayed letter is no longer waiting: {listed}"
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}
