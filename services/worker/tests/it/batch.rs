//! The `notifications` group writes the entries of one read together, in one statement. These tests
//! hand such reads straight to the handlers, on real Postgres: copies of an event, events already
//! processed, overlapping reads by several workers at once, and an entry that cannot be handled.

use std::sync::Arc;

use streambank_events::{EventType, StreamEntry};
use streambank_service::Bank;
use streambank_testkit::{TestDb, fixtures};
use streambank_worker::consumer::{Delivery, Handle as _};
use streambank_worker::{Config, Group, Handlers};
use uuid::Uuid;

fn handlers(db: &TestDb) -> Handlers {
    // Only the handlers are used (no Redis, no listener).
    Config::new(
        db.url.clone(),
        "redis://127.0.0.1:6379".into(),
        "unused".into(),
    )
    .handlers()
    .expect("handlers")
}

/// A `transfer.completed` entry as the relay publishes it (the handlers read only the payload).
fn transfer_entry(event_id: Uuid, n: usize, from_owner: i64, to_owner: i64) -> StreamEntry {
    StreamEntry {
        event_id: event_id.to_string(),
        event_type: EventType::TransferCompleted.as_str().to_owned(),
        aggregate_type: "transfer".into(),
        aggregate_id: n.to_string(),
        occurred_at: format!("2026-12-02T08:00:00.{n:06}Z"),
        traceparent: String::new(),
        payload: serde_json::json!({
            "transfer_id": n, "from_account_id": 1, "to_account_id": 2,
            "from_owner_id": from_owner, "to_owner_id": to_owner, "amount": 100 + n, "currency": "USD",
        })
        .to_string(),
    }
}

fn deliveries(entries: &[StreamEntry]) -> Vec<Delivery> {
    entries
        .iter()
        .map(|e| Delivery::new(Group::Notifications, e.clone()))
        .collect()
}

#[tokio::test]
async fn overlapping_reads_by_several_workers_write_each_event_once() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let ann = fixtures::customer(&bank, "ann").await.user_id;
    let bob = fixtures::customer(&bank, "bob").await.user_id;
    let events: Vec<Uuid> = (0..200).map(|_| Uuid::new_v4()).collect();
    let entries: Vec<StreamEntry> = events
        .iter()
        .enumerate()
        .map(|(n, id)| transfer_entry(*id, n, ann, bob))
        .collect();
    let handlers = Arc::new(handlers(&db));

    // Four workers at once, each with overlapping reads of 64 entries (a republish gives the same events
    // to several consumers), and one read that carries copies of the same events.
    let mut reads: Vec<Vec<StreamEntry>> = (0..4)
        .flat_map(|w| (0..4).map(move |r| (w, r)))
        .map(|(w, r)| {
            let start = (w * 37 + r * 45) % 150;
            entries[start..start + 50].to_vec()
        })
        .collect();
    reads.push([&entries[..10], &entries[..10], &entries[190..]].concat());
    reads.push(entries.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for read in reads {
        let handlers = Arc::clone(&handlers);
        tasks.spawn(async move {
            let deliveries = deliveries(&read);
            let outcomes = handlers
                .handle_many(Group::Notifications, &deliveries)
                .await;
            assert_eq!(outcomes.len(), read.len(), "one outcome per entry");
            for outcome in outcomes {
                outcome.expect("every entry handled");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("task");
    }

    assert_eq!(
        db.count("notifications").await,
        400,
        "two rows per event, once"
    );
    let processed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM processed_events WHERE consumer = 'notifications'",
    )
    .fetch_one(&db.pool)
    .await
    .expect("count");
    assert_eq!(processed, 200);
    let per_user: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT user_id, count(*) FROM notifications GROUP BY user_id ORDER BY user_id",
    )
    .fetch_all(&db.pool)
    .await
    .expect("per user");
    assert_eq!(per_user, [(ann, 200), (bob, 200)]);
}

#[tokio::test]
async fn one_bad_entry_fails_alone_and_rows_follow_the_order_of_events() {
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let ann = fixtures::customer(&bank, "ann").await.user_id;
    let bob = fixtures::customer(&bank, "bob").await.user_id;
    let handlers = handlers(&db);
    // Newest first in the read, as two streams may interleave them.
    let mut entries: Vec<StreamEntry> = (0..5)
        .rev()
        .map(|n| transfer_entry(Uuid::new_v4(), n, ann, bob))
        .collect();
    let mut broken = transfer_entry(Uuid::new_v4(), 9, ann, bob);
    broken.payload = "{\"transfer_id\": \"not a number\"}".into();
    entries.insert(2, broken);
    let mut not_an_id = transfer_entry(Uuid::new_v4(), 10, ann, bob);
    not_an_id.event_id = "42".into();
    entries.push(not_an_id);

    let outcomes = handlers
        .handle_many(Group::Notifications, &deliveries(&entries))
        .await;
    let failed: Vec<usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| o.is_err().then_some(i))
        .collect();
    assert_eq!(failed, [2, 6], "only the broken entries fail: {outcomes:?}");

    // Ann's rows, oldest first by id, are transfers 0..5 in the order they happened.
    let amounts: Vec<String> =
        sqlx::query_scalar("SELECT body FROM notifications WHERE user_id = $1 ORDER BY id")
            .bind(ann)
            .fetch_all(&db.pool)
            .await
            .expect("rows");
    let expected: Vec<String> = (0..5)
        .map(|n| format!("You sent 1.{:02} USD from account 1 to account 2.", n))
        .collect();
    assert_eq!(amounts, expected);
}
