//! The whole system on the scaled engines of issue 23, run as an operator runs it: the real api, whose
//! lists read from a streaming replica; two relays and two workers on a 3+3 Redis Cluster with 8
//! partitions, publishing with `WAIT 1`; and the SMTP catcher.
//!
//! Over REST, customers register, verify their address by the emailed link, log in, move money (each
//! transfer sent twice with one `Idempotency-Key`) and read their statement at once; a relay and a
//! worker are killed with `kill -9` between two rounds and others started. Every effect is then
//! counted: one notification row and one email per notice, one verification email per customer. Then
//! the operator's repairs, on the cluster: `bankctl outbox republish` changes none of those counts,
//! and `bankctl dlq list` / `dlq replay` find an entry the workers gave up on and put it back on its
//! partition's stream.
//!
//! Engines: `scripts/engines.sh all start` runs the Redis Cluster on 127.0.0.1:17100-17105 and the
//! Postgres primary and replica on 55440 and 55441 (`REDIS_CLUSTER_NODES` and `DATABASE_READ_URL`,
//! with `DATABASE_URL`, name others). Mail: maildev, as `.ci/run` starts it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use streambank_bus::Bus;
use streambank_events::{Stream, stream_key};
use streambank_testkit::process::{Spawned, Stack};
use streambank_testkit::{TestDb, fixtures, maildev, rest};

use crate::common::bankctl_ok;

const PARTITIONS: u16 = 8;
const CUSTOMERS: usize = 6;
/// Transfers each customer makes in each of the three rounds.
const PER_ROUND: usize = 5;
/// The longest any effect may take to show.
const PATIENCE: Duration = Duration::from_secs(120);
const HOW_TO_START: &str = "start the private engines with `scripts/engines.sh all start`";

/// The cluster's seed nodes, checked to answer.
async fn cluster() -> (String, Bus) {
    let url = std::env::var("REDIS_CLUSTER_NODES").unwrap_or_else(|_| {
        (17100..17106)
            .map(|port| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let bus = Bus::open(&url).expect("cluster URLs");
    if let Err(e) = bus.ping().await {
        panic!("no Redis Cluster answers at {url} ({e}); {HOW_TO_START}");
    }
    (url, bus)
}

/// A fresh database on the private primary, and its URL on the replica once the replica holds it;
/// and a lock on the primary, held until dropped, that the api's `read_replica` tests take too (one
/// of them pauses the replica's replay).
async fn primary_and_replica() -> (TestDb, String, sqlx::PgConnection) {
    let (primary, replica) = match std::env::var("DATABASE_READ_URL") {
        Ok(read) if !read.is_empty() => (
            std::env::var("DATABASE_URL").expect("DATABASE_URL, the primary of DATABASE_READ_URL"),
            read,
        ),
        _ => (
            "postgres://postgres@127.0.0.1:55440/postgres".to_owned(),
            "postgres://postgres@127.0.0.1:55441/postgres".to_owned(),
        ),
    };
    let answers = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(Duration::from_secs(3))
        .connect(&replica)
        .await;
    assert!(
        answers.is_ok(),
        "no Postgres replica answers at {replica}; {HOW_TO_START}"
    );
    // In the `postgres` database, as theirs: advisory locks are per database.
    let admin = <sqlx::postgres::PgConnectOptions as std::str::FromStr>::from_str(&primary)
        .expect("a Postgres URL")
        .database("postgres");
    let mut lock = <sqlx::PgConnection as sqlx::Connection>::connect_with(&admin)
        .await
        .unwrap_or_else(|e| {
            panic!("no Postgres primary answers at {primary} ({e}); {HOW_TO_START}")
        });
    sqlx::query("SELECT pg_advisory_lock(23023)")
        .execute(&mut lock)
        .await
        .expect("the replica tests' lock");
    let db = TestDb::on(&primary).await;
    let read_url = db.on_replica(&replica).await;
    (db, read_url, lock)
}

/// A field of an `XINFO` reply.
fn field<T: redis::FromRedisValue>(reply: &HashMap<String, redis::Value>, name: &str) -> T {
    let value = reply
        .get(name)
        .unwrap_or_else(|| panic!("no {name} in the XINFO reply {reply:?}"));
    redis::from_redis_value_ref(value).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// What the system did, counted.
#[derive(Debug, PartialEq, Eq)]
struct Effects {
    /// Notification rows.
    rows: i64,
    /// Emails, one per (event, recipient).
    emails: usize,
    /// Copies of an email that arrived again with its own `Message-ID`.
    repeats: usize,
}

struct Customer {
    name: String,
    session: rest::Session,
    account: i64,
}

/// The system under test and what the test reads it with.
struct Scaled {
    db: TestDb,
    stack: Stack,
    bus: Bus,
    http: Client,
    domain: String,
}

impl Scaled {
    fn email(&self, name: &str) -> String {
        format!("{name}@{}", self.domain)
    }

    fn base(&self) -> &str {
        &self.stack.rest_base
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }

    /// Registers `name` over REST, waits for the verification email and opens its link.
    async fn register_and_verify(&self, name: &str) {
        rest::register(&self.http, self.base(), name, &self.email(name)).await;
        let mail = self.wait_for_mails(&self.email(name), 1).await;
        let link = maildev::verification_link(&mail[0]);
        assert!(
            link.starts_with(self.base()),
            "the link points at PUBLIC_BASE_URL: {link}"
        );
        let page = self.http.get(&link).send().await.expect("GET link");
        assert_eq!(page.status(), StatusCode::OK, "opening {link}");
    }

    async fn wait_for_mails(&self, address: &str, count: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let mails = maildev::mails_to(&self.http, address).await;
            if mails.len() >= count {
                return mails;
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{} of {count} emails to {address} after {PATIENCE:?}",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until `sql` counts `expected` (failing after [`PATIENCE`]), then returns how long it took.
    async fn wait_for_count(&self, sql: &str, expected: i64) -> Duration {
        let started = Instant::now();
        loop {
            let now = self.count(sql).await;
            if now == expected {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < PATIENCE,
                "{now} of {expected} counted by `{sql}` after {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A transfer of 1 from `from` to `to`, sent twice with one `Idempotency-Key` (the same transfer
    /// both times); then `from`'s statement, read at once (from the replica), holds its entry.
    async fn transfer_and_read(&self, from: &Customer, to: &Customer, key: &str) {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let response = self
                .http
                .post(format!("{}/v1/transfers", self.base()))
                .bearer_auth(&from.session.access)
                .header("Idempotency-Key", key)
                .json(
                    &json!({"from_account_id": from.account, "to_account_id": to.account,
                    "amount": 1, "currency": "USD"}),
                )
                .send()
                .await
                .expect("POST /v1/transfers");
            assert_eq!(response.status(), StatusCode::CREATED, "transfer {key}");
            let body: Value = response.json().await.expect("json");
            ids.push((
                body["transfer"]["id"].as_i64().expect("transfer id"),
                body["from_entry"]["id"].as_i64().expect("entry id"),
            ));
        }
        assert_eq!(ids[0], ids[1], "one key, one transfer");
        let statement: Value = self
            .http
            .get(format!(
                "{}/v1/accounts/{}/entries?page_size=50",
                self.base(),
                from.account
            ))
            .bearer_auth(&from.session.access)
            .send()
            .await
            .expect("GET entries")
            .json()
            .await
            .expect("json");
        let entries: Vec<i64> = statement["entries"]
            .as_array()
            .expect("entries")
            .iter()
            .filter_map(|e| e["id"].as_i64())
            .collect();
        assert!(
            entries.contains(&ids[0].1),
            "{}'s statement, read right after transfer {}, lacks its entry {}: {entries:?}",
            from.name,
            ids[0].0,
            ids[0].1
        );
    }

    /// One round: every customer makes `PER_ROUND` transfers to the next one, all customers at once.
    async fn round(&self, customers: &[Customer], round: usize) {
        let runs = customers.iter().enumerate().map(|(i, from)| {
            let to = &customers[(i + 1) % customers.len()];
            async move {
                for n in 0..PER_ROUND {
                    let key = format!("{}-{round}-{n}", from.name);
                    self.transfer_and_read(from, to, &key).await;
                }
            }
        });
        futures_util::future::join_all(runs).await;
    }

    /// Waits until every consumer group of every partition's streams has read each entry and
    /// acknowledged it.
    async fn wait_until_caught_up(&self) {
        let mut conn = self.bus.connect().await.expect("a cluster connection");
        let started = Instant::now();
        'again: loop {
            assert!(
                started.elapsed() < PATIENCE,
                "the consumer groups did not catch up in {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            for p in 0..PARTITIONS {
                let prefix =
                    streambank_config::partition_prefix(&self.stack.stream_prefix, PARTITIONS, p);
                for stream in Stream::ALL {
                    let key = stream_key(&prefix, stream);
                    let exists: bool = redis::cmd("EXISTS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("EXISTS");
                    if !exists {
                        continue;
                    }
                    let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
                        .arg("STREAM")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("XINFO STREAM");
                    let groups: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
                        .arg("GROUPS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("XINFO GROUPS");
                    let last = field::<String>(&info, "last-generated-id");
                    if groups.is_empty()
                        || groups.iter().any(|g| {
                            field::<i64>(g, "pending") > 0
                                || field::<String>(g, "last-delivered-id") != last
                        })
                    {
                        continue 'again;
                    }
                }
            }
            return;
        }
    }

    /// The effects counted: notification rows; the emails, one per (event, recipient), to each
    /// customer as many as expected; and how many copies of an email arrived again with its own
    /// `Message-ID` (the window `docs/events.md` documents: a worker killed after the mail server
    /// accepted an email and before it recorded that; a receiver drops such a copy). A copy with
    /// another `Message-ID` would be a true duplicate, and fails the test.
    async fn effects(&self, customers: &[Customer]) -> Effects {
        let rows = self.count("SELECT count(*) FROM notifications").await;
        let mails = maildev::mails_to_domain(&self.http, &self.domain).await;
        let ids = maildev::message_ids(&mails);
        let mut deliveries: HashMap<(String, String), HashSet<&String>> = HashMap::new();
        let mut repeats = 0;
        for (mail, id) in mails.iter().zip(&ids) {
            let event = mail["headers"]["x-streambank-event-id"]
                .as_str()
                .expect("every email names its event")
                .to_owned();
            let to = mail["to"][0]["address"]
                .as_str()
                .expect("a recipient")
                .to_owned();
            if !deliveries.entry((event, to)).or_default().insert(id) {
                repeats += 1;
            }
        }
        for (delivery, ids) in &deliveries {
            assert_eq!(
                ids.len(),
                1,
                "{delivery:?} was emailed with several Message-IDs: {ids:?}"
            );
        }
        for customer in customers {
            let to = self.email(&customer.name);
            let theirs = deliveries.keys().filter(|(_, t)| *t == to).count();
            // The verification, the opening, the deposit, and one per transfer out and in.
            let expected = 1 + 2 + 2 * 3 * PER_ROUND;
            assert_eq!(theirs, expected, "emails to {to}");
        }
        Effects {
            rows,
            emails: deliveries.len(),
            repeats,
        }
    }

    /// `bankctl` against this system's database, cluster and stream prefix.
    fn bankctl(&self, args: &[&str], cluster: &str) -> String {
        bankctl_ok(
            &self.db.url,
            args,
            &[
                ("REDIS_URL", cluster),
                ("STREAM_PREFIX", &self.stack.stream_prefix),
                ("BANKCTL_PASSWORD", fixtures::PASSWORD),
            ],
        )
    }

    /// The ids of the dead letters `bankctl dlq list` shows, with their lines.
    fn dead_letters(&self, cluster: &str) -> Vec<(i64, String)> {
        let listed = self.bankctl(&["dlq", "list"], cluster);
        if listed.trim() == "no dead letters" {
            return Vec::new();
        }
        listed
            .lines()
            .map(|line| {
                let id = line
                    .split_whitespace()
                    .next()
                    .and_then(|id| id.parse().ok())
                    .unwrap_or_else(|| panic!("a dead letter's line starts with its id: {line}"));
                (id, line.to_owned())
            })
            .collect()
    }

    async fn wait_for_dead_letters(&self, cluster: &str, count: usize) -> Vec<(i64, String)> {
        let started = Instant::now();
        loop {
            let letters = self.dead_letters(cluster);
            if letters.len() >= count {
                return letters;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{} of {count} dead letters after 30 s: {letters:?}",
                letters.len()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_system_on_a_cluster_and_a_replica_does_each_effect_once_and_bankctl_repairs_it() {
    let (cluster_url, bus) = cluster().await;
    let http = Client::new();
    maildev::check(&http).await;
    let (db, read_url, _one_at_a_time) = primary_and_replica().await;
    let stack = Stack::start(
        &db.url,
        &[
            ("REDIS_URL", cluster_url.clone()),
            ("STREAM_PARTITIONS", PARTITIONS.to_string()),
            ("RELAY_MIN_REPLICAS", "1".to_owned()),
            ("DATABASE_READ_URL", read_url),
            // A killed worker's entries are taken over within seconds, and its unfinished email
            // claims within 20 s (the default lease, 60 s, would only make the test longer).
            ("WORKER_CLAIM_MIN_IDLE", "2s".to_owned()),
            ("WORKER_SWEEP_INTERVAL", "500ms".to_owned()),
            ("WORKER_EMAIL_LEASE", "20s".to_owned()),
        ],
    )
    .await;
    let mut second_relay = stack.spawn("relay");
    let mut second_worker = stack.spawn("worker");
    let started_at = chrono::Utc::now() - chrono::Duration::seconds(5);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let mut system = Scaled {
        db,
        stack,
        bus,
        http,
        domain: format!("{id}.example.com"),
    };

    // A banker, made by the operator; customers, each verified by the link in their email.
    let banker = format!("banker_{}", &id[..8]);
    let banker_email = system.email(&banker);
    system.bankctl(
        &[
            "users",
            "create",
            "--username",
            &banker,
            "--email",
            &banker_email,
            "--full-name",
            "Banker",
            "--role",
            "banker",
            "--verified",
        ],
        &cluster_url,
    );
    let banker = rest::login(&system.http, system.base(), &banker).await;
    let mut customers = Vec::new();
    for i in 0..CUSTOMERS {
        let name = format!("c{i}_{}", &id[..8]);
        system.register_and_verify(&name).await;
        let session = rest::login(&system.http, system.base(), &name).await;
        let account = rest::open_account(&system.http, system.base(), &session.access, "USD").await;
        rest::deposit(
            &system.http,
            system.base(),
            &banker.access,
            account,
            1_000,
            "USD",
        )
        .await;
        customers.push(Customer {
            name,
            session,
            account,
        });
    }

    // Three rounds of transfers; between the first two, a relay and a worker die with kill -9, and
    // others take their place before the third.
    system.round(&customers, 0).await;
    second_relay.assert_running();
    second_worker.assert_running();
    drop(second_relay);
    drop(second_worker);
    system.round(&customers, 1).await;
    let mut third_relay: Spawned = system.stack.spawn("relay");
    let mut third_worker: Spawned = system.stack.spawn("worker");
    system.round(&customers, 2).await;

    let transfers = i64::try_from(CUSTOMERS * 3 * PER_ROUND).expect("small");
    assert_eq!(
        system.count("SELECT count(*) FROM transfers").await,
        transfers
    );
    let customers_count = i64::try_from(CUSTOMERS).expect("small");
    // One notice per opening and per deposit, two per transfer.
    let notices = 2 * customers_count + 2 * transfers;
    let took = system
        .wait_for_count("SELECT count(*) FROM notifications", notices)
        .await;
    system
        .wait_for_count(
            "SELECT count(*) FROM email_deliveries WHERE state = 'sent'",
            notices + customers_count,
        )
        .await;
    system.wait_until_caught_up().await;
    let effects = system.effects(&customers).await;
    assert_eq!(effects.rows, notices);
    println!(
        "{transfers} transfers: {} notification rows (the last {took:?} after the last transfer), \
         {} emails, each once, and {} copies with the same Message-ID",
        effects.rows, effects.emails, effects.repeats
    );

    // `bankctl outbox republish` on the cluster: every event goes out again, and nothing is done twice.
    let since = started_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let republished = system.bankctl(&["outbox", "republish", "--since", &since], &cluster_url);
    assert!(
        republished.contains("marked for publishing again"),
        "{republished}"
    );
    system
        .wait_for_count("SELECT count(*) FROM outbox WHERE published_at IS NULL", 0)
        .await;
    system.wait_until_caught_up().await;
    assert_eq!(system.effects(&customers).await, effects);

    // An entry no worker can read goes to the dead letters of both groups that read its stream;
    // `bankctl dlq replay` puts one back on that partition's stream, where both give up on it again.
    assert!(system.dead_letters(&cluster_url).is_empty());
    let key = stream_key(
        &streambank_config::partition_prefix(&system.stack.stream_prefix, PARTITIONS, 3),
        Stream::Transfers,
    );
    let mut conn = system.bus.connect().await.expect("a cluster connection");
    let _: String = redis::cmd("XADD")
        .arg(&key)
        .arg("*")
        .arg("junk")
        .arg("not an event")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    let first = system.wait_for_dead_letters(&cluster_url, 2).await;
    assert_eq!(first.len(), 2, "{first:?}");
    for (_, line) in &first {
        assert!(line.contains(&format!("from={key}")), "{line}");
    }
    let (replayed, _) = first[0];
    let answer = system.bankctl(&["dlq", "replay", &replayed.to_string()], &cluster_url);
    assert!(
        answer.starts_with(&format!("replayed dead letter {replayed} onto {key} as ")),
        "{answer}"
    );
    let after = system.wait_for_dead_letters(&cluster_url, 3).await;
    let ids: Vec<i64> = after.iter().map(|(id, _)| *id).collect();
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!ids.contains(&replayed), "{after:?}");
    assert!(ids.contains(&first[1].0), "{after:?}");
    let entries: usize = redis::cmd("XLEN")
        .arg(&key)
        .query_async::<usize>(&mut conn)
        .await
        .expect("XLEN");
    assert!(entries >= 2, "the junk entry and its replay are on {key}");

    system.stack.assert_running();
    third_relay.assert_running();
    third_worker.assert_running();
}
