//! The relay against real Postgres and Redis: fields, late commits, crashes, leadership, republishing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use redis::AsyncCommands as _;
use streambank_events::{Stream, stream_key};
use streambank_relay::{Config, Relay, publish_batch};
use streambank_service::{Bank, Role, TransferRequest};
use streambank_testkit::fixtures::user;
use streambank_testkit::{TestDb, redis, redis_url};

fn prefix() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

type Entries = Vec<(String, HashMap<String, String>)>;

async fn xrange(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> Entries {
    let reply: redis::streams::StreamRangeReply = redis.xrange_all(key).await.expect("XRANGE");
    reply
        .ids
        .into_iter()
        .map(|id| {
            let fields = id
                .map
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        redis::from_redis_value::<String>(v).expect("string field"),
                    )
                })
                .collect();
            (id.id, fields)
        })
        .collect()
}

async fn unpublished(db: &TestDb) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        .fetch_one(&db.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn events_reach_their_streams_with_the_contract_fields() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let banker = user(&bank, "banker", Role::Banker).await;
    let ann = user(&bank, "ann", Role::Customer).await;
    let bob = user(&bank, "bob", Role::Customer).await;
    let a = bank.open_account(ann, "USD").await.expect("open");
    let b = bank.open_account(bob, "USD").await.expect("open");
    bank.deposit(banker, a.id, 500, "USD")
        .await
        .expect("deposit");
    let request = TransferRequest {
        from_account_id: a.id,
        to_account_id: b.id,
        amount: 200,
        currency: "USD",
    };
    let transfer = bank.transfer(ann, None, request).await.expect("transfer");

    let prefix = prefix();
    let mut conn = redis().await;
    let published = publish_batch(&db.pool, &mut conn, &prefix, 500, 10_000)
        .await
        .expect("publish");
    assert_eq!(
        published, 7,
        "3 users, 2 accounts opened, 1 deposit, 1 transfer"
    );
    assert_eq!(unpublished(&db).await, 0);
    assert_eq!(
        publish_batch(&db.pool, &mut conn, &prefix, 500, 10_000)
            .await
            .expect("publish"),
        0
    );

    let transfers = xrange(&mut conn, &stream_key(&prefix, Stream::Transfers)).await;
    assert_eq!(transfers.len(), 1);
    let fields = &transfers[0].1;
    let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "aggregate_id",
            "aggregate_type",
            "event_id",
            "event_type",
            "occurred_at",
            "payload",
            "traceparent"
        ]
    );
    assert_eq!(fields["event_type"], "transfer.completed");
    assert_eq!(fields["aggregate_id"], transfer.transfer.id.to_string());
    let payload: serde_json::Value =
        serde_json::from_str(&fields["payload"]).expect("json payload");
    assert_eq!(payload["amount"], 200);
    assert!(chrono::DateTime::parse_from_rfc3339(&fields["occurred_at"]).is_ok());

    let accounts = xrange(&mut conn, &stream_key(&prefix, Stream::Accounts)).await;
    let types: Vec<&str> = accounts
        .iter()
        .map(|(_, f)| f["event_type"].as_str())
        .collect();
    assert_eq!(
        types,
        ["account.opened", "account.opened", "money.deposited"],
        "order of commit is kept"
    );
    assert_eq!(
        xrange(&mut conn, &stream_key(&prefix, Stream::Users))
            .await
            .len(),
        3
    );
}

#[tokio::test]
async fn a_row_that_commits_late_is_still_published() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let prefix = prefix();
    let mut conn = redis().await;

    // A transaction writes an outbox row and stays open...
    let mut late = db.pool.begin().await.expect("begin");
    sqlx::query(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload) VALUES ($1, 'user', '999', 'user.email_verified', '{\"user_id\": 999}')",
    )
    .bind(uuid::Uuid::now_v7())
    .execute(&mut *late)
    .await
    .expect("insert");
    // ...while later rows commit and are published.
    user(&bank, "ann", Role::Customer).await;
    assert_eq!(
        publish_batch(&db.pool, &mut conn, &prefix, 500, 10_000)
            .await
            .expect("publish"),
        1
    );
    late.commit().await.expect("commit");

    assert_eq!(
        publish_batch(&db.pool, &mut conn, &prefix, 500, 10_000)
            .await
            .expect("publish"),
        1
    );
    let users = xrange(&mut conn, &stream_key(&prefix, Stream::Users)).await;
    let types: Vec<&str> = users
        .iter()
        .map(|(_, f)| f["event_type"].as_str())
        .collect();
    assert_eq!(types, ["user.registered", "user.email_verified"]);
}

#[tokio::test]
async fn a_crash_before_the_mark_publishes_again_and_republish_repairs_redis() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    user(&bank, "ann", Role::Customer).await;
    let prefix = prefix();
    let mut conn = redis().await;
    let key = stream_key(&prefix, Stream::Users);

    // The relay dies between XADD and COMMIT: simulated by aborting the task mid-batch is racy, so do the
    // XADD half by hand and roll back, which is exactly what a crash leaves behind.
    let mut tx = db.pool.begin().await.expect("begin");
    let rows = streambank_store::relay::claim(&mut tx, 10)
        .await
        .expect("claim");
    assert_eq!(rows.len(), 1);
    let _: String = conn
        .xadd(&key, "*", &[("event_id", rows[0].id.to_string())])
        .await
        .expect("XADD");
    tx.rollback().await.expect("rollback");
    assert_eq!(
        unpublished(&db).await,
        1,
        "still unpublished after the crash"
    );
    assert_eq!(
        publish_batch(&db.pool, &mut conn, &prefix, 500, 10_000)
            .await
            .expect("publish"),
        1
    );
    let entries = xrange(&mut conn, &key).await;
    assert_eq!(
        entries.len(),
        2,
        "published twice: at least once, deduplicated by consumers"
    );
    assert_eq!(entries[0].1["event_id"], entries[1].1["event_id"]);

    // Redis loses everything; the retained outbox rows are published again.
    let _: () = conn.del(&key).await.expect("DEL");
    let since = chrono::Utc::now() - chrono::Duration::hours(1);
    let marked = streambank_store::relay::republish_since(&db.pool, since)
        .await
        .expect("republish");
    assert_eq!(marked, 1);
    assert_eq!(
        publish_batch(&db.pool, &mut conn, &prefix, 500, 10_000)
            .await
            .expect("publish"),
        1
    );
    assert_eq!(xrange(&mut conn, &key).await.len(), 1);
}

fn config(db: &TestDb, prefix: &str) -> Config {
    Config {
        database: streambank_config::Database::new(db.url.clone()),
        redis: streambank_config::Redis::new(redis_url()),
        streams: streambank_config::Streams::new(prefix.to_owned()),
        telemetry: streambank_config::Telemetry::default(),
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        batch_size: 100,
        poll_interval: Duration::from_millis(500),
        retention: Duration::from_secs(3600),
        max_stream_len: 10_000,
        min_replicas: 0,
        wait_timeout: std::time::Duration::from_secs(1),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_publishes_and_a_standby_takes_over_when_it_dies() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let prefix = prefix();
    let mut conn = redis().await;
    let key = stream_key(&prefix, Stream::Users);

    let first = Relay::new(config(&db, &prefix)).expect("relay");
    let second = Relay::new(config(&db, &prefix)).expect("relay");
    let first_task = tokio::spawn(first.clone().run(std::future::pending()));
    let wait = |what: &'static str, check: Box<dyn Fn() -> bool>| async move {
        let started = Instant::now();
        while !check() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let f = first.clone();
    wait("the first relay to lead", Box::new(move || f.is_leader())).await;
    let second_task = tokio::spawn(second.clone().run(std::future::pending()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_leader(), "only one relay leads");

    // NOTIFY wakes the leader well before its 500 ms fallback poll.
    user(&bank, "ann", Role::Customer).await;
    let started = Instant::now();
    while xrange(&mut conn, &key).await.is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "not published");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The entry is visible in Redis a moment before the batch commits and is counted.
    let published = "relay_events_published_total{stream=\"users\"} 1\n";
    let started = Instant::now();
    while !first.metrics().render().contains(published) {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{}",
            first.metrics().render()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let text = first.metrics().render();
    assert!(text.contains("relay_leader 1\n"), "{text}");
    assert!(second.metrics().render().contains("relay_leader 0\n"));

    // The leader dies (its task and its lock connection with it); the standby takes over.
    first_task.abort();
    let _ = first_task.await;
    let s = second.clone();
    let died = Instant::now();
    wait("the standby to take over", Box::new(move || s.is_leader())).await;
    assert!(
        died.elapsed() < Duration::from_secs(5),
        "took over in {:?}",
        died.elapsed()
    );
    user(&bank, "bob", Role::Customer).await;
    let started = Instant::now();
    while xrange(&mut conn, &key).await.len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the new leader does not publish"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    second_task.abort();
}

#[tokio::test]
async fn a_drain_over_many_batches_publishes_each_row_once_in_commit_order() {
    let db = TestDb::new().await;
    // 1,050 rows: ten full batches of 100, each next claim overlapping the previous XADDs, then a short one.
    sqlx::raw_sql(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload, created_at)
         SELECT gen_random_uuid(), 'transfer', i::text, 'transfer.completed', jsonb_build_object('transfer_id', i),
                now() + i * interval '1 millisecond'
         FROM generate_series(1, 1050) AS i",
    )
    .execute(&db.pool)
    .await
    .expect("backlog");
    let mut conn = redis().await;
    let prefix = prefix();
    let published =
        streambank_relay::drain(&db.pool, &mut conn, &prefix, 100, 10_000, None, || false)
            .await
            .expect("drain");
    assert_eq!(published, 1050);
    assert_eq!(unpublished(&db).await, 0);
    let order: Vec<i64> = xrange(&mut conn, &stream_key(&prefix, Stream::Transfers))
        .await
        .into_iter()
        .map(|(_, fields)| fields["aggregate_id"].parse().expect("id"))
        .collect();
    assert_eq!(
        order,
        (1..=1050).collect::<Vec<i64>>(),
        "every row once, in commit-time order"
    );

    // A stop request ends the drain after the batch in flight; what is left stays for the next pass.
    sqlx::raw_sql(
        "INSERT INTO outbox (id, aggregate_type, aggregate_id, event_type, payload)
         SELECT gen_random_uuid(), 'transfer', i::text, 'transfer.completed', '{}' FROM generate_series(1, 300) AS i",
    )
    .execute(&db.pool)
    .await
    .expect("more");
    let published =
        streambank_relay::drain(&db.pool, &mut conn, &prefix, 100, 10_000, None, || true)
            .await
            .expect("drain");
    assert_eq!(published, 100);
    assert_eq!(
        unpublished(&db).await,
        200,
        "the rest was not claimed for good"
    );
}
