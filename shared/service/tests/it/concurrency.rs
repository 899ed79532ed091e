//! Concurrency: many callers transferring at once among a few accounts, in both directions between the
//! same pairs and with amounts that would overdraw. Checked afterwards against the ledger's invariants,
//! not against any expected interleaving.

use std::collections::HashMap;

use crate::common::TestBank;
use rand::Rng as _;
use rand::seq::IndexedRandom as _;
use streambank_service::{Caller, Error, TransferRequest};
use tokio::task::JoinSet;

const ACCOUNTS: usize = 10;
const TASKS: usize = 64;
const TRANSFERS_PER_TASK: usize = 200;
const OPENING_BALANCE: i64 = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_transfers_never_overdraw_lose_or_invent_money() {
    let t = TestBank::with_max_connections(32).await;
    let mut accounts: Vec<(Caller, i64)> = Vec::new();
    for i in 0..ACCOUNTS {
        let owner = t.customer(&format!("owner_{i}")).await;
        let account = t.account(owner, "USD", OPENING_BALANCE).await;
        accounts.push((owner, account.id));
    }

    let mut tasks = JoinSet::new();
    for task in 0..TASKS {
        let bank = t.bank.clone();
        let accounts = accounts.clone();
        tasks.spawn(async move {
            let mut outcomes: HashMap<&'static str, u64> = HashMap::new();
            for n in 0..TRANSFERS_PER_TASK {
                let (from, to, amount) = {
                    let mut rng = rand::rng();
                    // Half the tasks hammer the first pair in alternating directions, so opposite
                    // transfers between the same two accounts race all the time.
                    let (from, to) = if task % 2 == 0 {
                        if n % 2 == 0 {
                            (accounts[0], accounts[1])
                        } else {
                            (accounts[1], accounts[0])
                        }
                    } else {
                        let pair: Vec<_> = accounts.choose_multiple(&mut rng, 2).copied().collect();
                        (pair[0], pair[1])
                    };
                    // Up to a third of all money in one transfer: many of these overdraw.
                    (from, to, rng.random_range(1..=OPENING_BALANCE * 3))
                };
                let request = TransferRequest {
                    from_account_id: from.1,
                    to_account_id: to.1,
                    amount,
                    currency: "USD",
                };
                let outcome = match bank.transfer(from.0, None, request).await {
                    Ok(_) => "completed",
                    Err(Error::InsufficientFunds) => "insufficient_funds",
                    Err(other) => panic!("a caller saw an unexpected error: {other:?}"),
                };
                *outcomes.entry(outcome).or_default() += 1;
            }
            outcomes
        });
    }
    let mut completed = 0;
    let mut refused = 0;
    while let Some(outcomes) = tasks.join_next().await {
        let outcomes = outcomes.expect("task panicked");
        completed += outcomes.get("completed").copied().unwrap_or(0);
        refused += outcomes.get("insufficient_funds").copied().unwrap_or(0);
    }
    assert_eq!(completed + refused, (TASKS * TRANSFERS_PER_TASK) as u64);
    assert!(
        completed > 1_000 && refused > 100,
        "the mix exercised both paths: {completed} completed, {refused} refused"
    );

    assert_ledger_invariants(&t, completed).await;

    // Concurrent callers were written in batches (group commit), not one transaction each.
    let (batches, batched) = t.bank.stats().transfer_batches();
    assert_eq!(
        batched as usize,
        TASKS * TRANSFERS_PER_TASK,
        "every transfer went through a batch"
    );
    assert!(
        batches < batched,
        "{batches} batches for {batched} transfers"
    );
    println!(
        "{completed} transfers completed, {refused} refused for insufficient funds, {} transient retries, \
         {batches} batches ({:.1} transfers per batch)",
        t.bank.stats().transfers_retried(),
        batched as f64 / batches as f64
    );
}

/// The ledger's invariants after `completed` transfers: no balance below zero, every balance the sum
/// of its entries, the total what was deposited, one transfer row and exactly one
/// `transfer.completed` outbox row per completed call.
async fn assert_ledger_invariants(t: &TestBank, completed: u64) {
    let pool = &t.db.pool;
    let negative: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE balance < 0")
        .fetch_one(pool)
        .await
        .expect("query");
    assert_eq!(negative, 0, "no balance below zero");

    let drifted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM accounts a
         WHERE a.balance <> (SELECT COALESCE(sum(e.amount), 0) FROM entries e WHERE e.account_id = a.id)",
    )
    .fetch_one(pool)
    .await
    .expect("query");
    assert_eq!(drifted, 0, "every balance equals the sum of its entries");

    let (total, deposited): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT sum(balance)::bigint FROM accounts),
                (SELECT sum(amount)::bigint FROM entries WHERE deposited_by IS NOT NULL)",
    )
    .fetch_one(pool)
    .await
    .expect("query");
    assert_eq!(total, OPENING_BALANCE * ACCOUNTS as i64);
    assert_eq!(total, deposited, "the total equals the deposits");

    let transfers = t.db.count("transfers").await;
    assert_eq!(
        transfers, completed as i64,
        "one transfer row per completed call"
    );
    let not_exactly_one_event: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transfers t
         WHERE (SELECT count(*) FROM outbox o
                WHERE o.event_type = 'transfer.completed' AND o.aggregate_id = t.id::text) <> 1",
    )
    .fetch_one(pool)
    .await
    .expect("query");
    assert_eq!(
        not_exactly_one_event, 0,
        "exactly one transfer.completed outbox row per transfer"
    );
    let events: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE event_type = 'transfer.completed'")
            .fetch_one(pool)
            .await
            .expect("query");
    assert_eq!(events, transfers);
}

/// The server ends every connection of the bank's database every 500 ms (`pg_terminate_backend`, what a
/// failover or an operator does) while callers transfer with idempotency keys: no caller sees an error
/// that is not about its own request, and each acknowledged key moved money exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_transfers_ride_out_terminated_connections() {
    const CALLERS: usize = 12;
    const TRANSFERS: usize = 40;
    let t = TestBank::with_max_connections(16).await;
    let mut accounts: Vec<(Caller, i64)> = Vec::new();
    for i in 0..4 {
        let owner = t.customer(&format!("steady_{i}")).await;
        accounts.push((owner, t.account(owner, "USD", OPENING_BALANCE).await.id));
    }
    let before: i64 = sqlx::query_scalar("SELECT sum(balance)::bigint FROM accounts")
        .fetch_one(&t.db.pool)
        .await
        .expect("sum");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let url = t.db.url.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let mut killed = 0i64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .fetch_one(&mut conn)
                .await
                .expect("terminate");
                killed += n;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            killed
        })
    };

    let mut tasks = JoinSet::new();
    for task in 0..CALLERS {
        let bank = t.bank.clone();
        let accounts = accounts.clone();
        tasks.spawn(async move {
            let mut moved = 0i64;
            for n in 0..TRANSFERS {
                let (from, to) = {
                    let mut rng = rand::rng();
                    let pair: Vec<_> = accounts.choose_multiple(&mut rng, 2).collect();
                    (*pair[0], *pair[1])
                };
                let key = format!("steady-{task}-{n}");
                let request = TransferRequest {
                    from_account_id: from.1,
                    to_account_id: to.1,
                    amount: 1,
                    currency: "USD",
                };
                let first = bank.transfer(from.0, Some(&key), request).await;
                let result = first.unwrap_or_else(|e| panic!("transfer {key}: {e:?}"));
                // The client retries (its answer could have been lost): the same transfer, not a new one.
                let again = bank
                    .transfer(from.0, Some(&key), request)
                    .await
                    .unwrap_or_else(|e| panic!("retry of {key}: {e:?}"));
                assert_eq!(again.transfer.id, result.transfer.id);
                moved += 1;
            }
            moved
        });
    }
    let mut acknowledged = 0;
    while let Some(done) = tasks.join_next().await {
        acknowledged += done.expect("caller");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let killed = killer.await.expect("killer");
    assert!(killed > 0, "the test terminated no connection");

    let transfers: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers")
        .fetch_one(&t.db.pool)
        .await
        .expect("count");
    assert_eq!(
        transfers, acknowledged,
        "each acknowledged key moved money once"
    );
    let after: i64 = sqlx::query_scalar("SELECT sum(balance)::bigint FROM accounts")
        .fetch_one(&t.db.pool)
        .await
        .expect("sum");
    assert_eq!(after, before, "money is conserved");
    let open_claims: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE response_status IS NULL")
            .fetch_one(&t.db.pool)
            .await
            .expect("count");
    assert_eq!(open_claims, 0, "no key is left claimed");
}

/// A request that dies half-way (its future dropped by a timeout, as a `kill -9` or a request timeout
/// ends it) leaves its idempotency key free: the client's retry with the same key goes through at once
/// instead of being told for a minute that the first is still in progress.
#[tokio::test]
async fn a_request_that_dies_half_way_leaves_its_key_free() {
    let t = TestBank::new().await;
    let ann = t.customer("ann").await;
    let bob = t.customer("bob").await;
    let from = t.account(ann, "USD", 1_000).await.id;
    let to = t.account(bob, "USD", 0).await.id;
    let request = TransferRequest {
        from_account_id: from,
        to_account_id: to,
        amount: 100,
        currency: "USD",
    };
    // Another transaction holds the source account, so the transfer blocks after claiming its key.
    let mut holder = t.db.pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(from)
        .execute(&mut *holder)
        .await
        .expect("lock");
    let first = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        t.bank.transfer(ann, Some("dies-half-way"), request),
    )
    .await;
    assert!(
        first.is_err(),
        "the first request was cut off while blocked"
    );
    holder.rollback().await.expect("rollback");

    let retry = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        t.bank.transfer(ann, Some("dies-half-way"), request),
    )
    .await
    .expect("the retry is not held up")
    .expect("the retry goes through");
    assert_eq!(retry.transfer.amount, 100);
    assert_eq!(t.balance(from).await, 900, "money moved once");
}

/// Every pooled connection ended by the server while idle (a restart, a failover, `pg_terminate_backend`):
/// the next reads still answer, on fresh connections.
#[tokio::test]
async fn reads_ride_out_connections_the_server_ended() {
    let t = TestBank::with_max_connections(4).await;
    let ann = t.customer("ann").await;
    let account = t.account(ann, "USD", 1_000).await.id;
    // Fill the pool with connections, then have the server end every one of them.
    reads(&t, ann, account).await;
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut *t.db.pool.acquire().await.expect("acquire"))
    .await
    .expect("terminate");
    assert!(killed >= 1, "no connection to end");
    reads(&t, ann, account).await;
}

async fn reads(t: &TestBank, caller: Caller, account: i64) {
    let mut tasks = JoinSet::new();
    for _ in 0..8 {
        let bank = t.bank.clone();
        tasks.spawn(async move { bank.get_account(caller, account).await });
    }
    while let Some(read) = tasks.join_next().await {
        let read = read.expect("task");
        assert_eq!(
            read.expect("a read after the connections were ended").id,
            account
        );
    }
}
