//! The event pipeline end to end on real Postgres, Redis and the SMTP catcher (maildev, whose HTTP API
//! the tests read): REST → outbox → relay → streams → workers → email and notification rows.
//!
//! The relay and the workers are driven step by step (`publish_batch`, `drain`, `sweep_once`) so the
//! tests are deterministic rather than sleep-driven.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use reqwest::StatusCode;
use serde_json::{Value, json};
use streambank_events::{EventType, Stream, StreamEntry, dead_letter_key, stream_key};
use streambank_testkit::{TestDb, fixtures, maildev, rest};
use streambank_worker::consumer::Handle;
use streambank_worker::{Config, Group, Handlers, Worker};

struct Env {
    db: TestDb,
    prefix: String,
    domain: String,
    api: String,
    http: reqwest::Client,
    redis: MultiplexedConnection,
}

impl Env {
    async fn new() -> Self {
        let http = reqwest::Client::new();
        maildev::check(&http).await;
        let db = TestDb::new().await;
        let vars = HashMap::from([
            ("DATABASE_URL", db.url.clone()),
            ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
            ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
            ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
            (
                "TOKEN_SYMMETRIC_KEY",
                "pipeline-key-0123456789-abcdefgh".to_owned(),
            ),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "100000".to_owned()),
            ("REDIS_URL", streambank_testkit::redis_url()),
        ]);
        let config = streambank_api::Config::from_lookup(&move |name| vars.get(name).cloned())
            .expect("config");
        let api = streambank_api::Api::bind(&config).await.expect("api");
        let base = format!("http://{}", api.http_addr().expect("addr"));
        tokio::spawn(api.run(std::future::pending()));
        let redis = streambank_testkit::redis().await;
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            db,
            prefix: format!("test-{id}"),
            domain: format!("{id}.example.com"),
            api: base,
            http,
            redis,
        }
    }

    fn config(&self) -> Config {
        Config {
            database: streambank_config::Database::new(self.db.url.clone()),
            redis: streambank_config::Redis::new(streambank_testkit::redis_url()),
            streams: streambank_config::Streams::new(self.prefix.clone()),
            telemetry: streambank_config::Telemetry::default(),
            health_addr: "127.0.0.1:0".parse().expect("addr"),
            smtp_url: "smtp://127.0.0.1:1025".to_owned(),
            mail_from: "StreamBank <no-reply@streambank.local>".to_owned(),
            public_base_url: self.api.clone(),
            max_deliveries: 3,
            claim_min_idle: Duration::from_millis(200),
            retry_base: Duration::from_millis(20),
            retry_max: Duration::from_millis(100),
            sweep_interval: Duration::from_millis(50),
            dead_letter_after: Duration::from_secs(24 * 3600),
            email_lease: Duration::from_secs(60),
        }
    }

    fn worker(&self) -> Worker {
        self.config().build().expect("worker")
    }

    async fn publish(&mut self) -> usize {
        let mut total = 0;
        loop {
            let n = streambank_relay::publish_batch(
                &self.db.pool,
                &mut self.redis,
                &self.prefix,
                500,
                100_000,
            )
            .await
            .expect("publish");
            total += n;
            if n == 0 {
                return total;
            }
        }
    }

    fn email(&self, name: &str) -> String {
        format!("{name}@{}", self.domain)
    }

    /// Registers `name` over REST at this test's own domain.
    async fn register(&self, name: &str) -> i64 {
        rest::register(&self.http, &self.api, name, &self.email(name)).await
    }

    /// The emails maildev holds for `address`.
    async fn mails(&self, address: &str) -> Vec<Value> {
        maildev::mails_to(&self.http, address).await
    }

    /// Waits up to `within` for `count` emails to `address`.
    async fn wait_for_mails(&self, address: &str, count: usize, within: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let mails = self.mails(address).await;
            if mails.len() >= count || started.elapsed() > within {
                return mails;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&self.db.pool)
            .await
            .expect("count")
    }
}

/// Registers and verifies through the emailed link; returns the login.
async fn verified_customer(env: &mut Env, worker: &Worker, name: &str) -> rest::Session {
    env.register(name).await;
    env.publish().await;
    worker.drain().await.expect("drain");
    let mails = env
        .wait_for_mails(&env.email(name), 1, Duration::from_secs(2))
        .await;
    assert_eq!(mails.len(), 1, "one verification email within 2 s");
    let link = maildev::verification_link(&mails[0]);
    assert!(
        link.starts_with(&env.api),
        "the link points at PUBLIC_BASE_URL: {link}"
    );
    let page = env.http.get(&link).send().await.expect("GET link");
    assert_eq!(page.status(), StatusCode::OK);
    rest::login(&env.http, &env.api, name).await
}

/// A registration is mailed a link (not before: logging in is refused until then) that verifies the
/// address, after which the user logs in.
#[tokio::test]
async fn registering_mails_a_link_that_verifies_the_address() {
    let mut env = Env::new().await;
    let worker = env.worker();
    env.register("ann").await;
    let early = rest::attempt_login(&env.http, &env.api, "ann").await;
    assert_eq!(early.status(), StatusCode::BAD_REQUEST, "not verified yet");
    env.publish().await;
    worker.drain().await.expect("drain");
    let mails = env
        .wait_for_mails(&env.email("ann"), 1, Duration::from_secs(2))
        .await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["subject"], "Confirm your email address");
    let page = env
        .http
        .get(maildev::verification_link(&mails[0]))
        .send()
        .await
        .expect("GET link");
    assert_eq!(page.status(), StatusCode::OK);
    rest::login(&env.http, &env.api, "ann").await;
}

/// Ann and Bob, verified through their emailed links, with a USD account each; a banker's deposit of
/// 100.00 into Ann's; her transfer of 12.34 to Bob over REST; everything published and drained.
struct Transferred {
    env: Env,
    ann_id: i64,
    bob_token: String,
}

async fn a_transfer_between_verified_customers() -> Transferred {
    let mut env = Env::new().await;
    let worker = env.worker();
    let ann = verified_customer(&mut env, &worker, "ann").await;
    let bob = verified_customer(&mut env, &worker, "bob").await;
    let ann_usd = rest::open_account(&env.http, &env.api, &ann.access, "USD").await;
    let bob_usd = rest::open_account(&env.http, &env.api, &bob.access, "USD").await;
    let bank = streambank_service::Bank::new(env.db.pool.clone());
    let banker = fixtures::user_at(
        &bank,
        "banker",
        &env.email("banker"),
        streambank_service::Role::Banker,
    )
    .await;
    bank.deposit(banker, ann_usd, 10_000, "USD")
        .await
        .expect("deposit");
    let transfer = env
        .http
        .post(format!("{}/v1/transfers", env.api))
        .bearer_auth(&ann.access)
        .json(&json!({"from_account_id": ann_usd, "to_account_id": bob_usd, "amount": 1_234, "currency": "USD"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(transfer.status(), StatusCode::CREATED);
    env.publish().await;
    worker.drain().await.expect("drain");
    Transferred {
        env,
        ann_id: ann.user_id,
        bob_token: bob.access,
    }
}

/// Each party of a transfer has notification rows (account opened, Ann's deposit, the transfer) and
/// an email for each, after the verification email.
#[tokio::test]
async fn a_transfer_notifies_both_parties_by_row_and_email() {
    let Transferred {
        env,
        ann_id,
        bob_token,
    } = a_transfer_between_verified_customers().await;
    let notifications: Value = env
        .http
        .get(format!("{}/v1/notifications", env.api))
        .bearer_auth(&bob_token)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let kinds: Vec<&str> = notifications["notifications"]
        .as_array()
        .expect("list")
        .iter()
        .map(|n| n["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, ["transfer.completed", "account.opened"]);
    assert!(
        notifications["notifications"][0]["body"]
            .as_str()
            .expect("body")
            .contains("You received 12.34 USD")
    );
    let ann_notes = env
        .count(&format!(
            "SELECT count(*) FROM notifications WHERE user_id = {ann_id}"
        ))
        .await;
    assert_eq!(ann_notes, 3, "opened, deposited, sent");
    let bob_mails = env
        .wait_for_mails(&env.email("bob"), 3, Duration::from_secs(2))
        .await;
    assert_eq!(
        bob_mails.len(),
        3,
        "verification, account opened, transfer received"
    );
    let ann_mails = env
        .wait_for_mails(&env.email("ann"), 4, Duration::from_secs(2))
        .await;
    assert_eq!(
        ann_mails.len(),
        4,
        "verification, account opened, deposit, transfer sent"
    );
}

/// After a transfer has been through the pipeline, its stream entry carries every contract field and
/// no group has an entry pending.
#[tokio::test]
async fn the_streams_read_plainly_and_every_group_is_caught_up() {
    let Transferred { mut env, .. } = a_transfer_between_verified_customers().await;
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream_key(&env.prefix, Stream::Transfers))
        .arg("-")
        .arg("+")
        .query_async(&mut env.redis)
        .await
        .expect("XRANGE");
    assert_eq!(entries.ids.len(), 1);
    for field in StreamEntry::FIELDS {
        assert!(entries.ids[0].map.contains_key(field), "{field}");
    }
    for (stream, group) in [
        (Stream::Users, "email-verification"),
        (Stream::Accounts, "notifications"),
        (Stream::Transfers, "notifications"),
        (Stream::Accounts, "notification-emails"),
        (Stream::Transfers, "notification-emails"),
    ] {
        let info: Vec<HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(stream_key(&env.prefix, stream))
            .query_async(&mut env.redis)
            .await
            .expect("XINFO");
        let g = info
            .iter()
            .find(|g| {
                redis::from_redis_value::<String>(g["name"].clone())
                    .ok()
                    .as_deref()
                    == Some(group)
            })
            .expect("group exists");
        assert_eq!(
            redis::from_redis_value::<i64>(g["pending"].clone()).expect("pending"),
            0,
            "{group} on {stream:?}"
        );
    }
}

#[tokio::test]
async fn redelivery_republish_and_a_dead_consumer_change_nothing() {
    let mut env = Env::new().await;
    let worker = env.worker();
    let token = verified_customer(&mut env, &worker, "carl").await.access;
    let r = env
        .http
        .post(format!("{}/v1/accounts", env.api))
        .bearer_auth(&token)
        .json(&json!({"currency": "EUR"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);

    // A consumer reads the account.opened entry and dies before XACK.
    let mut conn = worker.connection().await.expect("redis");
    worker.ensure_groups(&mut conn).await.expect("groups");
    env.publish().await;
    let key = stream_key(&env.prefix, Stream::Accounts);
    let stolen: Option<redis::streams::StreamReadReply> = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("notifications")
        .arg("doomed-consumer")
        .arg("COUNT")
        .arg(10)
        .arg("STREAMS")
        .arg(&key)
        .arg(">")
        .query_async(&mut conn)
        .await
        .expect("XREADGROUP");
    assert_eq!(stolen.expect("an entry").keys[0].ids.len(), 1);
    worker.drain().await.expect("drain"); // (reads user.email_verified, which no group acts on)
    assert_eq!(
        env.count("SELECT count(*) FROM notifications").await,
        0,
        "the entry is stuck with the dead consumer"
    );
    tokio::time::sleep(Duration::from_millis(250)).await; // past claim_min_idle
    assert_eq!(
        worker
            .sweep_once(&mut conn, Group::Notifications)
            .await
            .expect("sweep"),
        1,
        "taken over"
    );
    let metrics = worker.metrics().render();
    assert!(
        metrics.contains("worker_pending_entries{group=\"notifications\",stream=\"accounts\"} 1\n"),
        "the sweep saw the stuck entry: {metrics}"
    );

    // Redis loses everything; the retained outbox is republished and consumed again from scratch.
    streambank_testkit::delete_keys_under(&mut conn, &env.prefix).await;
    let marked = streambank_store::relay::republish_since(
        &env.db.pool,
        chrono::Utc::now() - chrono::Duration::hours(1),
    )
    .await
    .expect("republish");
    assert!(marked >= 2);
    env.publish().await;
    assert!(
        worker.drain().await.expect("drain") >= 2,
        "the republished events are read again"
    );

    // Every effect exactly once.
    let carl = env.email("carl");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mails = env.mails(&carl).await;
    assert_eq!(
        mails.len(),
        2,
        "one verification email and one account.opened email: {mails:?}"
    );
    assert_eq!(env.count("SELECT count(*) FROM notifications").await, 1);
    assert_eq!(env.count("SELECT count(*) FROM verify_emails").await, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM processed_events").await,
        3,
        "email-verification, notifications, notification-emails"
    );
}

/// Handlers that always fail on `account.opened` and behave normally otherwise.
#[derive(Debug)]
struct FailOnAccountOpened(Handlers);

impl Handle for FailOnAccountOpened {
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            if entry.event_type == EventType::AccountOpened.as_str() {
                anyhow::bail!("the notification template is broken");
            }
            self.0.handle(group, entry).await
        })
    }
}

/// Sweeps `group` until the dead-letter stream holds `n` entries, and returns their fields.
async fn dead_letters(
    worker: &Worker,
    conn: &mut streambank_bus::BusConnection,
    group: Group,
    prefix: &str,
    n: usize,
) -> Vec<HashMap<String, String>> {
    let dlq = dead_letter_key(prefix);
    let started = Instant::now();
    loop {
        worker.sweep_once(conn, group).await.expect("sweep");
        let len: usize = redis::cmd("XLEN")
            .arg(&dlq)
            .query_async(conn)
            .await
            .expect("XLEN");
        if len >= n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let dead: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&dlq)
        .arg("-")
        .arg("+")
        .query_async(conn)
        .await
        .expect("XRANGE");
    dead.ids
        .iter()
        .map(|entry| {
            entry
                .map
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        redis::from_redis_value(v.clone()).expect("string"),
                    )
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn a_poison_event_goes_to_the_dead_letter_stream_while_others_flow() {
    let mut env = Env::new().await;
    let config = env.config();
    let worker = Worker::new(
        config.clone(),
        Arc::new(FailOnAccountOpened(config.handlers().expect("handlers"))),
    )
    .expect("worker");
    let token = verified_customer(&mut env, &worker, "dora").await.access;
    let r = env
        .http
        .post(format!("{}/v1/accounts", env.api))
        .bearer_auth(&token)
        .json(&json!({"currency": "CAD"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), StatusCode::CREATED);
    env.register("eve").await; // another event that must keep flowing
    env.publish().await;
    worker.drain().await.expect("drain");
    assert_eq!(
        env.wait_for_mails(&env.email("eve"), 1, Duration::from_secs(2))
            .await
            .len(),
        1,
        "other events flow"
    );

    let mut conn = worker.connection().await.expect("redis");
    let dead = dead_letters(&worker, &mut conn, Group::Notifications, &env.prefix, 1).await;
    assert_eq!(dead.len(), 1, "only the poison event: {dead:?}");
    let fields = &dead[0];
    assert_eq!(fields["event_type"], "account.opened");
    assert_eq!(fields["dlq_group"], "notifications");
    assert_eq!(fields["dlq_deliveries"], "3");
    assert!(
        fields["dlq_error"].contains("template is broken"),
        "{fields:?}"
    );
    let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
        .arg(stream_key(&env.prefix, Stream::Accounts))
        .arg("notifications")
        .query_async(&mut conn)
        .await
        .expect("XPENDING");
    assert_eq!(pending.count(), 0, "acknowledged once dead-lettered");
    let metrics = worker.metrics().render();
    assert!(
        metrics.contains("worker_dead_lettered_total{group=\"notifications\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("worker_events_total{group=\"notifications\",outcome=\"error\"} 3\n"),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_entry_that_is_not_an_event_is_dead_lettered_and_others_flow() {
    let mut env = Env::new().await;
    let config = env.config();
    let worker = Worker::new(
        config.clone(),
        Arc::new(config.handlers().expect("handlers")),
    )
    .expect("worker");
    let mut conn = worker.connection().await.expect("redis");
    worker.drain().await.expect("the groups exist");
    // Something else wrote to the stream: none of the fields an event has.
    let _: String = redis::cmd("XADD")
        .arg(stream_key(&env.prefix, Stream::Users))
        .arg("*")
        .arg("hello")
        .arg("world")
        .query_async(&mut conn)
        .await
        .expect("XADD");
    env.register("fay").await;
    env.publish().await;
    worker.drain().await.expect("drain");
    assert_eq!(
        env.wait_for_mails(&env.email("fay"), 1, Duration::from_secs(2))
            .await
            .len(),
        1,
        "the real event behind it flows"
    );

    let dead = dead_letters(&worker, &mut conn, Group::EmailVerification, &env.prefix, 1).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["hello"], "world", "the entry is kept as it was");
    assert_eq!(dead[0]["dlq_group"], "email-verification");
    assert!(
        dead[0]["dlq_error"].contains("has no"),
        "the reason names the missing field: {dead:?}"
    );
}

/// Handlers that fail each entry the first time they see it (an SMTP hiccup, say), then behave.
#[derive(Debug)]
struct FailFirstTime {
    inner: Handlers,
    seen: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl Handle for FailFirstTime {
    fn handle<'a>(
        &'a self,
        group: Group,
        entry: &'a StreamEntry,
    ) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'a>> {
        Box::pin(async move {
            let first = self
                .seen
                .lock()
                .expect("lock")
                .insert(entry.event_id.clone());
            if first {
                anyhow::bail!("a hiccup");
            }
            self.inner.handle(group, entry).await
        })
    }
}

#[tokio::test]
async fn two_workers_racing_on_one_stale_entry_send_one_email() {
    const USERS: usize = 8;
    let mut env = Env::new().await;
    let config = env.config();
    // Worker A fails each entry once, so its entries wait in its pending list for a retry; worker B
    // sees them there too.
    let a = Worker::new(
        config.clone(),
        Arc::new(FailFirstTime {
            inner: config.handlers().expect("handlers"),
            seen: Default::default(),
        }),
    )
    .expect("worker");
    let b = env.worker();
    for i in 0..USERS {
        env.register(&format!("racer{i}")).await;
    }
    env.publish().await;
    a.drain().await.expect("drain");
    b.drain()
        .await
        .expect("the groups exist; nothing new to read");
    // Past A's backoff (its retry is due) and past claim_min_idle (A has read nothing since, so B
    // takes it for dead): A's retry sweep and B's takeover run at the same moment.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut conn_a = a.connection().await.expect("redis");
    let mut conn_b = b.connection().await.expect("redis");
    let (by_a, by_b) = tokio::join!(
        a.sweep_once(&mut conn_a, Group::EmailVerification),
        b.sweep_once(&mut conn_b, Group::EmailVerification)
    );
    let (by_a, by_b) = (by_a.expect("sweep"), by_b.expect("sweep"));
    assert_eq!(by_a + by_b, USERS, "each entry handled by one of them");
    tokio::time::sleep(Duration::from_millis(300)).await; // room for a duplicate to arrive
    for i in 0..USERS {
        let mails = env
            .wait_for_mails(&env.email(&format!("racer{i}")), 1, Duration::from_secs(5))
            .await;
        assert_eq!(
            maildev::message_ids(&mails).len(),
            1,
            "one email for racer{i}"
        );
    }
    assert_eq!(
        env.count("SELECT count(*) FROM email_deliveries WHERE state = 'sent'")
            .await,
        USERS as i64
    );
}

#[tokio::test]
async fn two_handlers_sending_the_same_emails_at_once_send_each_once() {
    const USERS: usize = 6;
    let mut env = Env::new().await;
    let config = env.config();
    let (one, two) = (
        config.handlers().expect("handlers"),
        config.handlers().expect("handlers"),
    );
    for i in 0..USERS {
        env.register(&format!("twin{i}")).await;
    }
    env.publish().await;
    let mut conn = env.redis.clone();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream_key(&env.prefix, Stream::Users))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let entries: Vec<StreamEntry> = entries
        .ids
        .iter()
        .map(|id| {
            let fields = id
                .map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value(v.clone()).expect("text")))
                .collect();
            StreamEntry::from_fields(fields).expect("an event")
        })
        .collect();
    assert_eq!(entries.len(), USERS);
    // Both workers handle every event at the same moment; whoever loses a claim is told to retry,
    // and its retry finds the email sent.
    let race = entries.iter().map(|entry| async {
        let (x, y) = tokio::join!(
            one.handle(Group::EmailVerification, entry),
            two.handle(Group::EmailVerification, entry)
        );
        for outcome in [x, y] {
            if let Err(e) = outcome {
                assert!(e.to_string().contains("is sending this email now"), "{e:#}");
                two.handle(Group::EmailVerification, entry)
                    .await
                    .expect("the retry finds the email sent");
            }
        }
    });
    futures_util::future::join_all(race).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..USERS {
        let mails = env
            .wait_for_mails(&env.email(&format!("twin{i}")), 1, Duration::from_secs(5))
            .await;
        assert_eq!(
            maildev::message_ids(&mails).len(),
            1,
            "one email for twin{i}"
        );
    }
}

/// A TCP relay to the SMTP catcher that can be cut: while down it closes every connection, open or new.
struct SmtpSwitch {
    url: String,
    up: tokio::sync::watch::Sender<bool>,
}

impl SmtpSwitch {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("smtp://{}", listener.local_addr().expect("addr"));
        let (up, state) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut state = state.clone();
                if !*state.borrow() {
                    continue; // dropped: the client sees the connection close
                }
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:1025").await
                    else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = state.wait_for(|up| !*up) => {}
                    }
                });
            }
        });
        Self { url, up }
    }

    fn set(&self, up: bool) {
        self.up.send_replace(up);
    }
}

#[tokio::test]
async fn an_smtp_outage_dead_letters_nothing_and_every_email_goes_out_once_after() {
    // STREAMBANK_OUTAGE_SECS=300 runs the five-minute outage; CI scales it down.
    let outage = Duration::from_secs(
        std::env::var("STREAMBANK_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(6),
    );
    const USERS: usize = 40;
    let mut env = Env::new().await;
    let smtp = SmtpSwitch::start().await;
    let config = Config {
        smtp_url: smtp.url.clone(),
        retry_max: Duration::from_secs(1),
        ..env.config()
    };
    let worker = config.build().expect("worker");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));

    smtp.set(false);
    let down_at = Instant::now();
    // The first users' emails fail and the group notices the outage; the rest are published while
    // it lasts and must wait in the stream, unread, rather than fail one by one.
    const FIRST: usize = 10;
    for i in 0..USERS {
        env.register(&format!("patient{i}")).await;
        if i + 1 == FIRST {
            env.publish().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    env.publish().await;
    let key = stream_key(&env.prefix, Stream::Users);
    let mut most_pending = 0;
    while down_at.elapsed() < outage {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(
            env.count("SELECT count(*) FROM dead_letters").await,
            0,
            "nothing is dead-lettered during an outage"
        );
        let mut conn = env.redis.clone();
        let pending: redis::streams::StreamPendingReply = redis::cmd("XPENDING")
            .arg(&key)
            .arg(Group::EmailVerification.name())
            .query_async(&mut conn)
            .await
            .expect("XPENDING");
        most_pending = most_pending.max(pending.count());
    }
    assert!(
        most_pending <= FIRST + 4,
        "the group stopped reading while SMTP was down ({most_pending} entries read and failed)"
    );
    smtp.set(true);
    let up_at = Instant::now();
    // Timed by the deliveries' records (maildev's listing of every email it holds is slow to poll).
    while env
        .count("SELECT count(*) FROM email_deliveries WHERE state = 'sent'")
        .await
        < USERS as i64
    {
        assert!(
            up_at.elapsed() < Duration::from_secs(30),
            "every email goes out after the outage"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drained = up_at.elapsed();
    eprintln!(
        "SMTP down {outage:?}: {USERS} emails delivered {drained:?} after it returned \
         ({:.0} emails/s including the first probe)",
        USERS as f64 / drained.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_millis(500)).await; // room for a duplicate to arrive
    for i in 0..USERS {
        let mails = env.mails(&env.email(&format!("patient{i}"))).await;
        assert_eq!(
            maildev::message_ids(&mails).len(),
            1,
            "exactly one email for patient{i}"
        );
    }
    assert_eq!(env.count("SELECT count(*) FROM dead_letters").await, 0);
    let _ = stop.send(());
    running.await.expect("join").expect("worker");
}
