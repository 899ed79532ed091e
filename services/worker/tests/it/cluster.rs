//! The event pipeline on a real Redis Cluster: 3 masters with a replica each, on loopback
//! (`scripts/engines.sh redis-cluster start`; `REDIS_CLUSTER_NODES` names other nodes). Relays over 8
//! partitions publish with `WAIT 1`; the worker reads each partition's streams in a loop of its own.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use streambank_bus::Bus;
use streambank_relay::Relay;
use streambank_service::{Bank, Caller, RegisterUser, Role, TransferRequest, UserOptions};
use streambank_testkit::TestDb;
use streambank_worker::Config;

const PARTITIONS: u16 = 8;

/// The cluster's seed nodes: `REDIS_CLUSTER_NODES`, else the six nodes `scripts/engines.sh` starts.
fn cluster_url() -> String {
    std::env::var("REDIS_CLUSTER_NODES").unwrap_or_else(|_| {
        (17100..17106)
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

async fn cluster() -> Bus {
    let url = cluster_url();
    let bus = Bus::open(&url).expect("cluster URLs");
    if let Err(e) = bus.ping().await {
        panic!(
            "no Redis Cluster answers at {url} ({e}); start one with `scripts/engines.sh redis-cluster start`"
        );
    }
    bus
}

async fn user(bank: &Bank, name: &str, role: Role) -> Caller {
    let input = RegisterUser {
        username: name.into(),
        email: format!("{name}@example.com"),
        full_name: name.into(),
        password: "correct horse battery".into(),
    };
    let options = UserOptions {
        role,
        verified: true,
    };
    let user = bank.create_user(input, options).await.expect("user");
    Caller {
        user_id: user.id,
        role,
    }
}

fn relay_config(db: &TestDb, prefix: &str) -> streambank_relay::Config {
    let mut streams = streambank_config::Streams::new(prefix.to_owned());
    streams.partitions = PARTITIONS;
    streambank_relay::Config {
        database: streambank_config::Database::new(db.url.clone()),
        redis: streambank_config::Redis::new(cluster_url()),
        streams,
        telemetry: streambank_config::Telemetry::default(),
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        batch_size: 100,
        poll_interval: Duration::from_millis(200),
        retention: Duration::from_secs(3600),
        max_stream_len: 100_000,
        min_replicas: 1,
        wait_timeout: Duration::from_secs(1),
    }
}

fn worker_config(db: &TestDb, prefix: &str) -> Config {
    let mut config = Config::new(db.url.clone(), cluster_url(), prefix.to_owned());
    config.streams.partitions = PARTITIONS;
    config.health_addr = "127.0.0.1:0".parse().expect("addr");
    config.claim_min_idle = Duration::from_millis(500);
    config.sweep_interval = Duration::from_millis(200);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_is_handled_once_through_a_redis_cluster() {
    let bus = cluster().await;
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());

    let banker = user(&bank, "banker", Role::Banker).await;
    let mut accounts = Vec::new();
    for i in 0..6 {
        let owner = user(&bank, &format!("customer{i}"), Role::Customer).await;
        let account = bank.open_account(owner, "USD").await.expect("account");
        bank.deposit(banker, account.id, 100_000, "USD")
            .await
            .expect("deposit");
        accounts.push((owner, account.id));
    }
    let transfers = 30;
    for i in 0..transfers {
        let (from, from_account) = accounts[i % 6];
        let (_, to_account) = accounts[(i + 1 + i / 6) % 6];
        if from_account == to_account {
            continue;
        }
        let request = TransferRequest {
            from_account_id: from_account,
            to_account_id: to_account,
            amount: 100,
            currency: "USD",
        };
        bank.transfer(from, None, request).await.expect("transfer");
    }
    let moved: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers")
        .fetch_one(&db.pool)
        .await
        .expect("count");
    // One notice per opening and per deposit, two per transfer (sender and receiver).
    let expected = 6 + 6 + 2 * moved;

    let relays: Vec<Relay> = (0..2)
        .map(|_| Relay::new(relay_config(&db, &prefix)).expect("relay"))
        .collect();
    let mut tasks = Vec::new();
    for relay in &relays {
        tasks.push(tokio::spawn(relay.clone().run(std::future::pending())));
    }
    let worker = worker_config(&db, &prefix).build().expect("worker");
    let worker_task = tokio::spawn(worker.run(std::future::pending()));

    let started = Instant::now();
    loop {
        let notified: i64 = sqlx::query_scalar("SELECT count(*) FROM notifications")
            .fetch_one(&db.pool)
            .await
            .expect("count");
        if notified == expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{notified} of {expected} notifications after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{expected} notifications through the cluster in {:?}",
        started.elapsed()
    );
    let unpublished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&db.pool)
            .await
            .expect("count");
    assert_eq!(unpublished, 0);
    let led: usize = relays.iter().map(|r| r.partitions().len()).sum();
    assert_eq!(led, usize::from(PARTITIONS), "every partition has a leader");

    // The partitions' streams are spread over more than one master.
    let mut conn = bus.connect().await.expect("connection");
    let mut slots = HashSet::new();
    for p in 0..PARTITIONS {
        let key = streambank_events::stream_key(
            &streambank_config::partition_prefix(&prefix, PARTITIONS, p),
            streambank_events::Stream::Transfers,
        );
        let slot: i64 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("KEYSLOT");
        slots.insert(slot / 5462);
    }
    assert!(
        slots.len() >= 2,
        "8 partitions over 3 masters' slot ranges: {slots:?}"
    );
    worker_task.abort();
    for task in tasks {
        task.abort();
    }
}

/// A node of the cluster, as `CLUSTER NODES` lists it.
#[derive(Debug, Clone)]
struct Node {
    id: String,
    port: u16,
    master_of: Option<String>,
    slots: Vec<(i64, i64)>,
}

async fn nodes(bus: &Bus) -> Vec<Node> {
    let mut conn = bus.connect().await.expect("connection");
    let text: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query_async(&mut conn)
        .await
        .expect("CLUSTER NODES");
    text.lines()
        .filter(|line| !line.contains("fail"))
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port = fields
                .get(1)?
                .split('@')
                .next()?
                .rsplit(':')
                .next()?
                .parse()
                .ok()?;
            let slots = fields[8..]
                .iter()
                .filter_map(|range| {
                    let (a, b) = range.split_once('-').unwrap_or((range, range));
                    Some((a.parse().ok()?, b.parse().ok()?))
                })
                .collect();
            Some(Node {
                id: fields[0].to_owned(),
                port,
                master_of: (fields[3] != "-").then(|| fields[3].to_owned()),
                slots,
            })
        })
        .collect()
}

async fn direct(port: u16) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("a node")
}

async fn pid(port: u16) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut direct(port).await)
        .await
        .expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .expect("process_id")
        .trim()
        .to_owned()
}

fn signal(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

fn engines(args: &[&str]) -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/engines.sh");
    let out = std::process::Command::new(script)
        .args(args)
        .output()
        .expect("scripts/engines.sh");
    assert!(
        out.status.success(),
        "engines.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Publishes one event while its master's replica is cut off, then kills the master with `kill -9`
/// and lets the replica take over; returns whether the new master has the event, and whether the
/// outbox still holds it unpublished.
async fn publish_then_kill_the_master(min_replicas: u32) -> (bool, bool) {
    let bus = cluster().await;
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let mut conn = bus.connect().await.expect("connection");
    user(&bank, "ann", Role::Customer).await;
    let (event_id, partition_key): (uuid::Uuid, i32) =
        sqlx::query_as("SELECT id, partition_key FROM outbox")
            .fetch_one(&db.pool)
            .await
            .expect("the user's event");
    let index = u16::try_from(partition_key % i32::from(PARTITIONS)).expect("partition");
    let key_prefix = streambank_config::partition_prefix(&prefix, PARTITIONS, index);
    let key = streambank_events::stream_key(&key_prefix, streambank_events::Stream::Users);
    let slot: i64 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("KEYSLOT");
    let all = nodes(&bus).await;
    let master = all
        .iter()
        .find(|n| n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .expect("the slot's master")
        .clone();
    let replica = all
        .iter()
        .find(|n| n.master_of.as_deref() == Some(master.id.as_str()))
        .expect("the master's replica")
        .clone();

    // Freeze the replica and cut its link: what the master acknowledges now exists only on it.
    let replica_pid = pid(replica.port).await;
    let master_pid = pid(master.port).await;
    signal("-STOP", &replica_pid);
    let _: redis::Value = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("replica")
        .query_async(&mut direct(master.port).await)
        .await
        .expect("CLIENT KILL");
    let lane = streambank_relay::Lane {
        partition: streambank_store::relay::Partition {
            index,
            count: PARTITIONS,
        },
        prefix: key_prefix.clone(),
        batch_size: 100,
        max_stream_len: 1000,
        min_replicas,
        wait_timeout: Duration::from_millis(200),
    };
    let published = streambank_relay::drain_lane(&db.pool, &mut conn, &lane, None, || false).await;
    assert_eq!(
        published.is_ok(),
        min_replicas == 0,
        "WAIT decides the batch: {published:?}"
    );
    signal("-9", &master_pid);
    signal("-CONT", &replica_pid);
    engines(&["redis-cluster", "wait-ok", "20"]);

    let mut conn = bus.connect().await.expect("connection");
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&key)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let on_the_new_master = entries
        .ids
        .iter()
        .any(|e| e.get::<String>("event_id").as_deref() == Some(event_id.to_string().as_str()));
    let unpublished: bool =
        sqlx::query_scalar("SELECT published_at IS NULL FROM outbox WHERE id = $1")
            .bind(event_id)
            .fetch_one(&db.pool)
            .await
            .expect("the row");
    engines(&["redis-cluster", "restart-node", &master.port.to_string()]);
    engines(&["redis-cluster", "wait-ok", "20"]);
    if unpublished {
        // The relay's next pass, once the killed node is back as the new master's replica.
        let started = Instant::now();
        loop {
            let mut conn = bus.connect().await.expect("connection");
            match streambank_relay::drain_lane(&db.pool, &mut conn, &lane, None, || false).await {
                Ok(1) => break,
                outcome => assert!(
                    started.elapsed() < Duration::from_secs(20),
                    "the row never went again: {outcome:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
            .arg(&key)
            .arg("-")
            .arg("+")
            .query_async(&mut bus.connect().await.expect("connection"))
            .await
            .expect("XRANGE");
        assert_eq!(entries.ids.len(), 1, "published again, once");
    }
    (on_the_new_master, unpublished)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_wait_a_killed_master_loses_an_acknowledged_entry_and_with_wait_it_goes_again() {
    let (kept, unpublished) = publish_then_kill_the_master(0).await;
    assert!(
        !kept && !unpublished,
        "without WAIT the row is marked published and the new master lacks its entry: lost"
    );
    let (kept, unpublished) = publish_then_kill_the_master(1).await;
    assert!(
        !kept && unpublished,
        "with WAIT 1 the batch is not committed, so the row stays to be published again"
    );
}
