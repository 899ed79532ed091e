//! Concurrency: many callers transferring at once among a few accounts, in both directions between the
//! same pairs and with amounts that would overdraw. Checked afterwards against the ledger's invariants,
//! not against any expected interleaving.

mod common;

use std::collections::HashMap;

use common::TestBank;
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
                let outcome = match bank.transfer(from.0, request).await {
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
