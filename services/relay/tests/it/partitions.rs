//! Relays sharing a partitioned outbox (`STREAM_PARTITIONS`): every event lands in its aggregate's
//! partition stream, and the relays that are up lead `ceil(P / relays)` partitions each, taking over a
//! dead relay's within 5 s and giving a new one its share within 10 s.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use streambank_config::partition_prefix;
use streambank_events::{Stream, stream_key};
use streambank_relay::{Config, Relay};
use streambank_service::{Bank, RegisterUser, Role, UserOptions};
use streambank_testkit::{TestDb, redis, redis_url};
use tokio::task::JoinHandle;

const PARTITIONS: u16 = 8;

fn config(db: &TestDb, prefix: &str) -> Config {
    let mut streams = streambank_config::Streams::new(prefix.to_owned());
    streams.partitions = PARTITIONS;
    Config {
        database: streambank_config::Database::new(db.url.clone()),
        redis: streambank_config::Redis::new(redis_url()),
        streams,
        telemetry: streambank_config::Telemetry::default(),
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        batch_size: 100,
        poll_interval: Duration::from_millis(200),
        retention: Duration::from_secs(3600),
        max_stream_len: 10_000,
        min_replicas: 0,
        wait_timeout: Duration::from_secs(1),
    }
}

fn start(relay: &Relay) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(relay.clone().run(std::future::pending()))
}

/// How many partitions each relay leads, largest first.
fn shares(relays: &[&Relay]) -> Vec<usize> {
    let mut shares: Vec<usize> = relays.iter().map(|r| r.partitions().len()).collect();
    shares.sort_unstable_by(|a, b| b.cmp(a));
    shares
}

/// Waits until the relays lead exactly `expected` (largest first) and no partition twice; returns
/// how long that took.
async fn settle(relays: &[&Relay], expected: &[usize], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut led: Vec<u16> = relays.iter().flat_map(|r| r.partitions()).collect();
        led.sort_unstable();
        led.dedup();
        if shares(relays) == expected && led.len() == usize::from(PARTITIONS) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "the relays lead {:?} after {within:?}, not {expected:?}",
            relays.iter().map(|r| r.partitions()).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_relays_share_eight_partitions_and_take_over_a_dead_ones() {
    let db = TestDb::new().await;
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let relays: Vec<Relay> = (0..3)
        .map(|_| Relay::new(config(&db, &prefix)).expect("relay"))
        .collect();
    let mut tasks: Vec<JoinHandle<_>> = relays.iter().map(start).collect();
    let all: Vec<&Relay> = relays.iter().collect();
    settle(&all, &[3, 3, 2], Duration::from_secs(10)).await;

    // One relay that leads three dies: its lock connection goes with it, and the two others lead
    // four each within 5 s.
    let victim = relays
        .iter()
        .position(|r| r.partitions().len() == 3)
        .expect("a relay with three");
    tasks.remove(victim).abort();
    let survivors: Vec<&Relay> = relays
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, r)| r)
        .collect();
    let took = settle(&survivors, &[4, 4], Duration::from_secs(5)).await;
    println!("two relays led 4/4 {took:?} after the third died");

    // A relay that joins gets its share within 10 s: 3/3/2 again.
    let newcomer = Relay::new(config(&db, &prefix)).expect("relay");
    tasks.push(start(&newcomer));
    let mut three = survivors.clone();
    three.push(&newcomer);
    let took = settle(&three, &[3, 3, 2], Duration::from_secs(10)).await;
    println!("the newcomer had its share {took:?} after joining");
    for task in tasks {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_lands_once_in_its_aggregates_partition() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    for i in 0..40 {
        let input = RegisterUser {
            username: format!("user{i}"),
            email: format!("user{i}@example.com"),
            full_name: format!("User {i}"),
            password: "correct horse battery".into(),
        };
        let options = UserOptions {
            role: Role::Customer,
            verified: false,
        };
        bank.create_user(input, options).await.expect("user");
    }
    let rows: Vec<(uuid::Uuid, i32)> =
        sqlx::query_as("SELECT id, partition_key FROM outbox ORDER BY created_at, id")
            .fetch_all(&db.pool)
            .await
            .expect("outbox");
    assert_eq!(rows.len(), 40);

    let relays: Vec<Relay> = (0..2)
        .map(|_| Relay::new(config(&db, &prefix)).expect("relay"))
        .collect();
    let tasks: Vec<JoinHandle<_>> = relays.iter().map(start).collect();
    let mut conn = redis().await;
    let keys: Vec<String> = (0..PARTITIONS)
        .map(|p| stream_key(&partition_prefix(&prefix, PARTITIONS, p), Stream::Users))
        .collect();
    let started = Instant::now();
    let mut found: HashMap<String, u16> = HashMap::new();
    while found.len() < rows.len() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{} of {} events published",
            found.len(),
            rows.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        found.clear();
        for (p, key) in (0..PARTITIONS).zip(&keys) {
            let reply: redis::streams::StreamRangeReply =
                conn.xrange_all(key).await.expect("XRANGE");
            for entry in reply.ids {
                let event_id: String = entry.get("event_id").expect("an event id");
                assert!(
                    found.insert(event_id.clone(), p).is_none(),
                    "{event_id} was published twice"
                );
            }
        }
    }
    for (id, partition_key) in &rows {
        let expected = u16::try_from(*partition_key % i32::from(PARTITIONS)).expect("a partition");
        assert_eq!(found[&id.to_string()], expected, "the partition of {id}");
    }
    let used: std::collections::HashSet<u16> = found.values().copied().collect();
    assert!(
        used.len() >= 4,
        "40 users spread over at least 4 of 8 partitions: {used:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with('{')),
        "partition keys carry a hash tag: {keys:?}"
    );
    for task in tasks {
        task.abort();
    }
}
