//! Lists from a streaming replica (issue 23), against a real Postgres primary and its hot standby.
//!
//! The pair is `DATABASE_URL` and `DATABASE_READ_URL` when `DATABASE_READ_URL` is set (as
//! `eval "$(scripts/engines.sh pg-replica env)"` sets both), else the private pair that
//! `scripts/engines.sh pg-replica start` runs on 127.0.0.1:55440 and 55441. A pair that cannot be
//! reached, or that is no primary and replica of one another, fails every test here, saying how to
//! start it. The tests take a lock on the primary so that they run one at a time: one of them pauses
//! the replica's replay, and one times reads.
//!
//! Each test starts the api in-process on port 0, over a fresh database made on the primary (it
//! reaches the replica by replication), and talks to it over REST.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection as _, PgConnection};
use streambank_api::{Api, Config};
use streambank_service::{Bank, RegisterUser, Role, UserOptions};
use streambank_testkit::TestDb;
use tokio::sync::oneshot;

use crate::common::PASSWORD;

const ENGINES_PRIMARY: &str = "postgres://postgres@127.0.0.1:55440/streambank";
const ENGINES_REPLICA: &str = "postgres://postgres@127.0.0.1:55441/streambank";
const HOW_TO_START: &str = "Start the private primary and replica with \
    `scripts/engines.sh pg-replica start` (then, to name them, \
    `eval \"$(scripts/engines.sh pg-replica env)\"`; without DATABASE_READ_URL this test uses \
    127.0.0.1:55440 and 55441).";
/// The api's `DATABASE_READ_MAX_WAIT` in these tests (its default).
const MAX_WAIT: Duration = Duration::from_millis(50);

/// The primary and replica servers, checked: both answer, the replica is in recovery, and both are
/// the same cluster (one system identifier).
async fn engines() -> (String, String) {
    let (primary, replica) = match std::env::var("DATABASE_READ_URL")
        .ok()
        .filter(|url| !url.is_empty())
    {
        Some(read) => (
            std::env::var("DATABASE_URL").unwrap_or_else(|_| ENGINES_PRIMARY.to_owned()),
            read,
        ),
        None => (ENGINES_PRIMARY.to_owned(), ENGINES_REPLICA.to_owned()),
    };
    let mut identity = Vec::new();
    for (role, url) in [("primary", &primary), ("replica", &replica)] {
        let mut admin = admin(url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach the {role} at {url} ({e}).\n{HOW_TO_START}"));
        let (system, in_recovery): (String, bool) = sqlx::query_as(
            "SELECT system_identifier::text, pg_is_in_recovery() FROM pg_control_system()",
        )
        .fetch_one(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot ask the {role} at {url} what it is: {e}"));
        assert_eq!(
            in_recovery,
            role == "replica",
            "the {role} at {url} is {}in recovery.\n{HOW_TO_START}",
            if in_recovery { "" } else { "not " }
        );
        identity.push(system);
    }
    assert_eq!(
        identity[0], identity[1],
        "{replica} is not a replica of {primary}.\n{HOW_TO_START}"
    );
    (primary, replica)
}

/// A connection to the `postgres` database of the server `url` names.
async fn admin(url: &str) -> sqlx::Result<PgConnection> {
    let options = PgConnectOptions::from_str(url)?.database("postgres");
    PgConnection::connect_with(&options).await
}

/// Holds a lock on the primary until dropped, so that the tests here run one at a time (nextest runs
/// each in a process of its own).
async fn one_at_a_time(primary: &str) -> PgConnection {
    let mut lock = admin(primary).await.expect("connect for the lock");
    sqlx::query("SELECT pg_advisory_lock(23023)")
        .execute(&mut lock)
        .await
        .expect("take the lock");
    lock
}

/// The api in-process on port 0, and what a test needs around it.
struct App {
    base: String,
    metrics: String,
    client: Client,
    /// The service layer on the primary, for what has no REST route (making users).
    bank: Bank,
    _stop: oneshot::Sender<()>,
}

impl App {
    async fn spawn(db: &TestDb, read_url: Option<&str>) -> Self {
        let mut env = crate::common::api_env(&db.url, 8);
        if let Some(url) = read_url {
            env.insert("DATABASE_READ_URL".into(), url.into());
        }
        let config = Config::from_lookup(&move |name| env.get(name).cloned()).expect("config");
        let api = Api::bind(&config).await.expect("bind the api");
        let base = format!("http://{}", api.http_addr().expect("address"));
        let metrics = format!("http://{}/metrics", api.metrics_addr().expect("address"));
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(api.run(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            metrics,
            client: Client::new(),
            bank: Bank::new(db.pool.clone()),
            _stop: stop,
        }
    }

    /// A verified user with `role`, logged in over REST: their id and access token.
    async fn user(&self, name: &str, role: Role) -> (i64, String) {
        let input = RegisterUser {
            username: name.into(),
            email: format!("{name}@example.com"),
            full_name: "Read Replica".into(),
            password: PASSWORD.into(),
        };
        let options = UserOptions {
            role,
            verified: true,
        };
        self.bank.create_user(input, options).await.expect("user");
        let login = self
            .send(
                reqwest::Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"username": name, "password": PASSWORD})),
            )
            .await;
        (
            login["user"]["id"].as_i64().expect("user id"),
            login["access_token"].as_str().expect("token").to_owned(),
        )
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        self.send(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn open_account(&self, token: &str, currency: &str) -> i64 {
        let body = json!({"currency": currency});
        self.send(
            reqwest::Method::POST,
            "/v1/accounts",
            Some(token),
            Some(body),
        )
        .await["id"]
            .as_i64()
            .expect("account id")
    }

    async fn deposit(&self, banker: &str, account: i64, amount: i64, currency: &str) {
        let body = json!({"amount": amount, "currency": currency});
        let path = format!("/v1/accounts/{account}/deposits");
        self.send(reqwest::Method::POST, &path, Some(banker), Some(body))
            .await;
    }

    /// A transfer of `amount` (with an `Idempotency-Key` when `key` is given): the transfer's id and
    /// the caller's entry's id.
    async fn transfer(
        &self,
        token: &str,
        from: i64,
        to: i64,
        currency: &str,
        key: Option<String>,
    ) -> (i64, i64) {
        let mut request = self
            .client
            .post(format!("{}/v1/transfers", self.base))
            .bearer_auth(token)
            .json(&json!({"from_account_id": from, "to_account_id": to, "amount": 1, "currency": currency}));
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("transfer");
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        (
            body["transfer"]["id"].as_i64().expect("transfer id"),
            body["from_entry"]["id"].as_i64().expect("entry id"),
        )
    }

    /// The newest entry of an account's statement.
    async fn newest_entry(&self, token: &str, account: i64) -> Option<i64> {
        let path = format!("/v1/accounts/{account}/entries?page_size=1");
        self.get(&path, token).await["entries"][0]["id"].as_i64()
    }

    /// The transfer of the newest entry of an account's statement.
    async fn newest_entry_transfer(&self, token: &str, account: i64) -> Option<i64> {
        let path = format!("/v1/accounts/{account}/entries?page_size=1");
        self.get(&path, token).await["entries"][0]["transfer_id"].as_i64()
    }

    /// The newest transfer into or out of an account.
    async fn newest_transfer(&self, token: &str, account: i64) -> Option<i64> {
        let path = format!("/v1/transfers?account_id={account}&page_size=1");
        self.get(&path, token).await["transfers"][0]["id"].as_i64()
    }

    /// `/metrics`, as text.
    async fn metrics(&self) -> String {
        let response = self
            .client
            .get(&self.metrics)
            .send()
            .await
            .expect("metrics");
        response.text().await.expect("metrics text")
    }

    /// `replica_reads_total` by (server, check).
    async fn replica_reads(&self) -> HashMap<(String, String), u64> {
        let text = self.metrics().await;
        text.lines()
            .filter_map(|line| line.strip_prefix("replica_reads_total{"))
            .filter_map(|line| {
                let (labels, value) = line.split_once("} ")?;
                let label = |name: &str| {
                    labels
                        .split(',')
                        .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                        .map(|v| v.trim_end_matches('"').to_owned())
                };
                Some(((label("server")?, label("check")?), value.parse().ok()?))
            })
            .collect()
    }
}

/// How many sessions the replica has open on `database` (`pg_stat_activity`).
async fn replica_sessions_on(replica: &str, database: &str) -> i64 {
    let mut admin = admin(replica).await.expect("replica");
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
        .bind(database)
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity")
}

/// The replica's replay paused until dropped (or [`ReplayPaused::resume`]d).
struct ReplayPaused {
    replica: String,
}

impl ReplayPaused {
    async fn pause(replica: &str) -> Self {
        let mut admin = admin(replica).await.expect("replica");
        sqlx::query("SELECT pg_wal_replay_pause()")
            .execute(&mut admin)
            .await
            .expect("pause replay");
        let paused = Self {
            replica: replica.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let state: String = sqlx::query_scalar("SELECT pg_get_wal_replay_pause_state()")
                .fetch_one(&mut admin)
                .await
                .expect("pause state");
            if state == "paused" {
                return paused;
            }
            assert!(Instant::now() < deadline, "replay did not pause: {state}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn resume(&self) {
        let mut admin = admin(&self.replica).await.expect("replica");
        sqlx::query("SELECT pg_wal_replay_resume()")
            .execute(&mut admin)
            .await
            .expect("resume replay");
    }
}

impl Drop for ReplayPaused {
    /// Resumes replay even when the test fails, so that the replica does not stay behind.
    fn drop(&mut self) {
        let replica = self.replica.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = admin(&replica).await.ok()?;
                sqlx::query("SELECT pg_wal_replay_resume()")
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// One customer with two accounts (USD and EUR, one each), both funded, and a payee with the same
/// two currencies.
struct Payer {
    token: String,
    accounts: [(i64, i64, &'static str); 2],
}

async fn payer(app: &App, tag: &str) -> Payer {
    let (_, banker) = app.user(&format!("banker{tag}"), Role::Banker).await;
    let (_, ann) = app.user(&format!("ann{tag}"), Role::Customer).await;
    let (_, bob) = app.user(&format!("bob{tag}"), Role::Customer).await;
    let mut accounts = [(0, 0, "USD"), (0, 0, "EUR")];
    for (from, to, currency) in &mut accounts {
        *from = app.open_account(&ann, currency).await;
        *to = app.open_account(&bob, currency).await;
        app.deposit(&banker, *from, 1_000_000, currency).await;
    }
    Payer {
        token: ann,
        accounts,
    }
}

/// The time each kind of call took, in microseconds.
#[derive(Default)]
struct Timings {
    transfer: Vec<u64>,
    statement: Vec<u64>,
    transfers: Vec<u64>,
}

impl Timings {
    fn summary(&mut self, name: &str) -> String {
        let mut line = format!("{name}:");
        for (what, v) in [
            ("transfer", &mut self.transfer),
            ("statement", &mut self.statement),
            ("transfer list", &mut self.transfers),
        ] {
            v.sort_unstable();
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            let total: u64 = v.iter().sum();
            line += &format!(
                " {what} p50 {} us p99 {} us total {} ms;",
                at(0.5),
                at(0.99),
                total / 1000
            );
        }
        line
    }

    fn total(&self) -> Duration {
        let all = self
            .transfer
            .iter()
            .chain(&self.statement)
            .chain(&self.transfers);
        Duration::from_micros(all.sum())
    }
}

/// `pairs` transfers by `payer`, alternating accounts and with and without an `Idempotency-Key`, each
/// followed at once by the source's statement and transfer list, which must show it. Pair `i` is
/// written through `apps[i % 2]` and read through the other: give one app twice for one process.
async fn transfer_then_read(apps: [&App; 2], payer: &Payer, pairs: usize, timings: &mut Timings) {
    for i in 0..pairs {
        let (writer, reader) = (apps[i % 2], apps[(i + 1) % 2]);
        let (from, to, currency) = payer.accounts[i % 2];
        let key = (i % 4 >= 2).then(|| uuid::Uuid::new_v4().to_string());
        let t = Instant::now();
        let (transfer, entry) = writer.transfer(&payer.token, from, to, currency, key).await;
        timings.transfer.push(t.elapsed().as_micros() as u64);
        let t = Instant::now();
        let newest = reader.newest_entry(&payer.token, from).await;
        timings.statement.push(t.elapsed().as_micros() as u64);
        assert_eq!(
            newest,
            Some(entry),
            "pair {i}: the statement misses entry {entry}"
        );
        let t = Instant::now();
        let newest = reader.newest_transfer(&payer.token, from).await;
        timings.transfers.push(t.elapsed().as_micros() as u64);
        assert_eq!(
            newest,
            Some(transfer),
            "pair {i}: the transfer list misses transfer {transfer}"
        );
    }
}

/// A customer who transfers and at once reads their statement and transfer list sees the transfer
/// every time, 1,000 times, with lists on the replica; the same run without a replica is the
/// reference for the time it takes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_reads_their_own_transfers_from_the_replica() {
    let (primary, replica) = engines().await;
    let _one_at_a_time = one_at_a_time(&primary).await;
    let with_db = TestDb::on(&primary).await;
    let without_db = TestDb::on(&primary).await;
    let read_url = with_db.on_replica(&replica).await;
    let with = App::spawn(&with_db, Some(&read_url)).await;
    let without = App::spawn(&without_db, None).await;
    let (with_payer, without_payer) = (payer(&with, "w").await, payer(&without, "p").await);
    let before = with.replica_reads().await;

    // 10 rounds of 100 pairs each, taking turns (and turns at going first), so that the two see the
    // same machine.
    let sides = [(&with, &with_payer), (&without, &without_payer)];
    let mut times = [Timings::default(), Timings::default()];
    for round in 0..10 {
        for side in [round % 2, 1 - round % 2] {
            let (app, payer) = sides[side];
            transfer_then_read([app, app], payer, 100, &mut times[side]).await;
        }
    }
    let [mut with_times, mut without_times] = times;

    let after = with.replica_reads().await;
    let routed = |server: &str, check: &str| {
        let key = (server.to_owned(), check.to_owned());
        after.get(&key).copied().unwrap_or(0) - before.get(&key).copied().unwrap_or(0)
    };
    let on_replica =
        routed("replica", "none") + routed("replica", "replayed") + routed("replica", "waited");
    let on_primary = routed("primary", "behind") + routed("primary", "failed");
    let metrics = with.metrics().await;
    println!("{}", with_times.summary("with the replica"));
    println!("{}", without_times.summary("primary only"));
    println!(
        "with the replica {:?}, primary only {:?} (ratio {:.3})",
        with_times.total(),
        without_times.total(),
        with_times.total().as_secs_f64() / without_times.total().as_secs_f64()
    );
    println!(
        "2000 lists: replica {on_replica} (no check {}, replayed at first look {}, after waiting {}), \
         primary {on_primary} (replica behind {}, failed {})",
        routed("replica", "none"),
        routed("replica", "replayed"),
        routed("replica", "waited"),
        routed("primary", "behind"),
        routed("primary", "failed"),
    );
    for line in metrics.lines().filter(|l| l.starts_with("replica_check")) {
        println!("{line}");
    }
    assert_eq!(on_replica + on_primary, 2000, "every list is counted once");
    assert!(
        on_replica >= 1900,
        "most lists should run on a replica that keeps up: {on_replica} of 2000"
    );
    assert!(
        !without.metrics().await.contains("replica_"),
        "no replica series without DATABASE_READ_URL"
    );
}

/// The lists do run on the replica: with its replay paused, a caller's statement misses a transfer
/// that someone else made (on the primary it is there); the caller's own transfer, made while replay
/// is paused, is still shown to them, from the primary after `DATABASE_READ_MAX_WAIT`; once replay
/// resumes, the replica shows both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_run_on_the_replica_and_fall_back_when_it_is_behind() {
    let (primary, replica) = engines().await;
    let _one_at_a_time = one_at_a_time(&primary).await;
    let db = TestDb::on(&primary).await;
    let read_url = db.on_replica(&replica).await;
    let app = App::spawn(&db, Some(&read_url)).await;
    let ann = payer(&app, "a").await;
    let (ann_usd, bob_usd, _) = ann.accounts[0];
    let (_, bob) = app.user("bob2", Role::Customer).await;
    let bob_account = app.open_account(&bob, "USD").await;
    let (_, banker) = app.user("banker2", Role::Banker).await;
    app.deposit(&banker, bob_account, 1_000, "USD").await;
    // Ann's setup wrote nothing she will list, and the replica has everything so far.
    db.on_replica(&replica).await;
    let statement = app.newest_entry(&ann.token, ann_usd).await;
    assert!(
        replica_sessions_on(&replica, &db.name).await > 0,
        "the api holds connections to the replica's copy of {}",
        db.name
    );

    let paused = ReplayPaused::pause(&replica).await;
    let (incoming, _) = app.transfer(&bob, bob_account, ann_usd, "USD", None).await;
    let anyone = streambank_service::Caller {
        user_id: 0,
        role: Role::Banker,
    };
    let on_primary = app
        .bank
        .list_entries(anyone, ann_usd, streambank_service::PageRequest::first())
        .await
        .expect("Ann's statement on the primary");
    assert_eq!(on_primary.items[0].transfer_id, Some(incoming));
    assert_eq!(
        app.newest_entry(&ann.token, ann_usd).await,
        statement,
        "Ann's statement came from the paused replica: Bob's transfer is not on it yet"
    );

    let before = app.replica_reads().await;
    let (own, own_entry) = app
        .transfer(&ann.token, ann_usd, bob_usd, "USD", None)
        .await;
    let t = Instant::now();
    let newest = app.newest_entry(&ann.token, ann_usd).await;
    let took = t.elapsed();
    assert_eq!(newest, Some(own_entry), "Ann sees her own transfer at once");
    assert!(
        took >= MAX_WAIT,
        "it waited {MAX_WAIT:?} for the replica first: {took:?}"
    );
    let after = app.replica_reads().await;
    let behind = ("primary".to_owned(), "behind".to_owned());
    assert_eq!(
        after.get(&behind).copied().unwrap_or(0) - before.get(&behind).copied().unwrap_or(0),
        1,
        "the statement was read from the primary because the replica was behind"
    );

    paused.resume().await;
    drop(paused);
    db.on_replica(&replica).await;
    assert_eq!(app.newest_transfer(&ann.token, ann_usd).await, Some(own));
    let statement = app
        .get(&format!("/v1/accounts/{ann_usd}/entries"), &ann.token)
        .await;
    let transfers: Vec<i64> = statement["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["transfer_id"].as_i64())
        .collect();
    assert_eq!(transfers[..2], [own, incoming], "the replica has both now");
    let last = app.replica_reads().await;
    let on_replica: u64 = last
        .iter()
        .filter(|((server, _), _)| server == "replica")
        .map(|(_, n)| n)
        .sum();
    let before_replica: u64 = after
        .iter()
        .filter(|((server, _), _)| server == "replica")
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        on_replica - before_replica,
        2,
        "both lists ran on the replica again"
    );
}

/// Without `DATABASE_READ_URL` nothing changes: the api never connects to the replica, adds no
/// series to `/metrics`, and every list shows what was just written, by anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_read_url_everything_reads_the_primary() {
    let (primary, replica) = engines().await;
    let _one_at_a_time = one_at_a_time(&primary).await;
    let db = TestDb::on(&primary).await;
    let app = App::spawn(&db, None).await;
    let ann = payer(&app, "n").await;
    let (ann_usd, bob_usd, _) = ann.accounts[0];
    let (_, bob) = app.user("bob3", Role::Customer).await;
    let bob_account = app.open_account(&bob, "USD").await;
    let (_, banker) = app.user("banker3", Role::Banker).await;
    app.deposit(&banker, bob_account, 1_000, "USD").await;

    let paused = ReplayPaused::pause(&replica).await;
    for _ in 0..20 {
        let (incoming, _) = app.transfer(&bob, bob_account, ann_usd, "USD", None).await;
        let newest = app.newest_entry_transfer(&ann.token, ann_usd).await;
        assert_eq!(
            newest,
            Some(incoming),
            "Bob's transfer is on Ann's statement at once"
        );
        assert_eq!(
            app.newest_transfer(&ann.token, ann_usd).await,
            Some(incoming)
        );
        let (own, entry) = app
            .transfer(&ann.token, ann_usd, bob_usd, "USD", None)
            .await;
        assert_eq!(app.newest_entry(&ann.token, ann_usd).await, Some(entry));
        assert_eq!(app.newest_transfer(&ann.token, ann_usd).await, Some(own));
    }
    paused.resume().await;
    assert_eq!(
        replica_sessions_on(&replica, &db.name).await,
        0,
        "nothing connected to the replica's copy of {}",
        db.name
    );
    assert!(
        !app.metrics().await.contains("replica_"),
        "no replica series"
    );
}

/// A replica that cannot be reached costs one list the replica pool's acquire timeout (1 s); that list
/// and every one after it are answered from the primary, with nothing missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_replica_sends_lists_to_the_primary() {
    let (primary, _) = engines().await;
    let _one_at_a_time = one_at_a_time(&primary).await;
    let db = TestDb::on(&primary).await;
    // Nothing listens on port 1: every connection is refused.
    let app = App::spawn(&db, Some("postgres://postgres@127.0.0.1:1/streambank")).await;
    let ann = payer(&app, "u").await;
    let (ann_usd, bob_usd, _) = ann.accounts[0];

    // Ann has written nothing yet: her list goes straight to the replica's pool, which gives up.
    let t = Instant::now();
    let statement = app.newest_entry(&ann.token, ann_usd).await;
    let first = t.elapsed();
    assert!(statement.is_some(), "the deposit, from the primary");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let (own, entry) = app
            .transfer(&ann.token, ann_usd, bob_usd, "USD", None)
            .await;
        let t = Instant::now();
        assert_eq!(app.newest_entry(&ann.token, ann_usd).await, Some(entry));
        assert_eq!(app.newest_transfer(&ann.token, ann_usd).await, Some(own));
        slowest = slowest.max(t.elapsed());
    }
    println!("first list {first:?}, slowest pair of lists after it {slowest:?}");
    assert!(
        first < Duration::from_millis(1500),
        "the first list gave up on the replica after the acquire timeout (1 s): {first:?}"
    );
    assert!(
        slowest < Duration::from_millis(500),
        "later lists went straight to the primary: {slowest:?}"
    );
    let reads = app.replica_reads().await;
    let count = |server: &str, check: &str| {
        reads
            .get(&(server.to_owned(), check.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(count("primary", "failed"), 41, "{reads:?}");
    let on_replica: u64 = ["none", "replayed", "waited"]
        .iter()
        .map(|check| count("replica", check))
        .sum();
    assert_eq!(on_replica, 0);
}

/// A caller whose requests go to two api processes in turn (as behind a load balancer) sees each
/// transfer made through one in the other's lists at once, 1,000 times: the processes share their
/// callers' last writes in Redis (`shared_writes`). And with the replica's replay paused, a transfer
/// made through one process is in the other's statement (read from the primary after
/// `DATABASE_READ_MAX_WAIT`), where the paused replica would have missed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_reads_their_own_transfers_through_another_api_process() {
    let (primary, replica) = engines().await;
    let _one_at_a_time = one_at_a_time(&primary).await;
    let db = TestDb::on(&primary).await;
    let read_url = db.on_replica(&replica).await;
    let first = App::spawn(&db, Some(&read_url)).await;
    let second = App::spawn(&db, Some(&read_url)).await;
    let payer = payer(&first, "x").await;
    let before = [first.replica_reads().await, second.replica_reads().await];

    let mut timings = Timings::default();
    transfer_then_read([&first, &second], &payer, 1000, &mut timings).await;
    println!("{}", timings.summary("two api processes"));
    let mut checked = 0;
    for (app, before) in [&first, &second].into_iter().zip(&before) {
        let after = app.replica_reads().await;
        for ((server, check), count) in &after {
            let count = count
                - before
                    .get(&(server.clone(), check.clone()))
                    .copied()
                    .unwrap_or(0);
            println!("{server}/{check}: {count}");
            if check != "none" {
                checked += count;
            }
        }
    }
    // Each pair's first list follows a write made in the other process: it was checked against the
    // replica's replay (or sent to the primary), never read blind. (The pair's second list then
    // finds the replica known to be past the write and needs no check.)
    assert!(
        checked >= 1000,
        "first lists after a write in the other process that checked the replica: {checked} of 1000"
    );

    let (from, to, currency) = payer.accounts[0];
    db.on_replica(&replica).await;
    let paused = ReplayPaused::pause(&replica).await;
    let (transfer, entry) = first.transfer(&payer.token, from, to, currency, None).await;
    assert_eq!(second.newest_entry(&payer.token, from).await, Some(entry));
    assert_eq!(
        second.newest_transfer(&payer.token, from).await,
        Some(transfer)
    );
    paused.resume().await;
}
