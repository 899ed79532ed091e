//! The ledger's benchmark data and the service-layer load both benchmarks share.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use streambank_service::{Bank, Caller, Role, TransferRequest, TransferResult};

/// Every benchmark account starts with this many minor units: enough that no transfer is refused.
pub const OPENING_BALANCE: i64 = 1_000_000_000;

/// Runs transfers for a few seconds, then ANALYZEs. Without it the first connections plan their
/// foreign-key checks while `transfers` is empty (a sequential scan looks cheapest there) and keep those
/// plans until the table is next analyzed, so every later transfer scans a growing table: the first
/// minutes of a fresh database are slow for everyone, pgbench included. ANALYZE invalidates those plans
/// in every backend.
pub async fn warm_up(bank: &Bank, pool: &PgPool, accounts: i64) -> anyhow::Result<()> {
    service_tps(bank, accounts, 4, Duration::from_secs(2)).await?;
    sqlx::raw_sql("ANALYZE").execute(pool).await?;
    Ok(())
}

/// Transfers per second through `Bank::transfer` with `concurrency` callers for `duration`.
pub async fn service_tps(
    bank: &Bank,
    accounts: i64,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let bank = bank.clone();
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < deadline {
                let (from, to) = random_pair(accounts);
                let amount = rand::rng().random_range(1..=100);
                transfer(&bank, from, to, amount).await?;
                done += 1;
            }
            anyhow::Ok(done)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// A random account of `1..=accounts` and a random other one.
pub fn random_pair(accounts: i64) -> (i64, i64) {
    let from = rand::rng().random_range(1..=accounts);
    (from, random_other(from, accounts))
}

/// A random account other than `account`, out of `1..=accounts`.
pub fn random_other(account: i64, accounts: i64) -> i64 {
    let to = rand::rng().random_range(1..accounts);
    if to >= account { to + 1 } else { to }
}

/// The customer who owns `account`: account `i` belongs to user `i` (see [`prepare_database`]).
pub fn owner(account: i64) -> Caller {
    Caller {
        user_id: account,
        role: Role::Customer,
    }
}

/// A transfer of `amount` minor units of USD from account `from` to account `to`, by `from`'s owner.
pub async fn transfer(
    bank: &Bank,
    from: i64,
    to: i64,
    amount: i64,
) -> streambank_service::Result<TransferResult> {
    let request = TransferRequest {
        from_account_id: from,
        to_account_id: to,
        amount,
        currency: "USD",
    };
    bank.transfer(owner(from), None, request).await
}

/// Commits transfers through the service layer at a steady `rate` per second for `seconds`; returns the
/// moment (ms since the epoch) each transfer's commit returned, by transfer id.
pub async fn steady_load(bank: &Bank, rate: u64, seconds: u64) -> HashMap<i64, f64> {
    let committed: Arc<Mutex<HashMap<i64, f64>>> = Arc::default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    while Instant::now() < deadline {
        ticker.tick().await;
        let (bank, committed) = (bank.clone(), Arc::clone(&committed));
        tasks.spawn(async move {
            let (from, to) = random_pair(1_000);
            if let Ok(result) = transfer(&bank, from, to, 1).await {
                committed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(result.transfer.id, now_ms());
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    committed.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Now, in milliseconds since the epoch.
pub fn now_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// Drops and creates the benchmark database at `database_url` as [`prepare_database`] does, and opens
/// a pool of `connections` on it. `url_var` names where the URL came from, for the error a bad one
/// gets.
pub async fn fresh_database(
    database_url: &str,
    url_var: &str,
    accounts: i64,
    pgbench_scale: u32,
    connections: u32,
) -> anyhow::Result<(PgConnectOptions, PgPool)> {
    let options: PgConnectOptions = database_url.parse().with_context(|| url_var.to_owned())?;
    prepare_database(&options, database_url, accounts, pgbench_scale)
        .await
        .context("preparing the benchmark database")?;
    let pool = streambank_store::pool_options(connections)
        .connect_with(options.clone())
        .await
        .context("connecting to the benchmark database")?;
    Ok((options, pool))
}

/// Drops and creates the benchmark database, migrates it, gives user `i` the USD account `i` with a
/// large opening deposit, and initialises pgbench's tables in the same database.
pub async fn prepare_database(
    options: &PgConnectOptions,
    database_url: &str,
    accounts: i64,
    pgbench_scale: u32,
) -> anyhow::Result<()> {
    let name = options
        .get_database()
        .context("the benchmark URL names no database")?
        .to_owned();
    anyhow::ensure!(
        name.contains("bench"),
        "refusing to drop {name:?}: the benchmark database name must contain \"bench\""
    );
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres")).await?;
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
        format!("CREATE DATABASE \"{name}\""),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await?;

    let pool: PgPool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await?;
    streambank_store::MIGRATOR.run(&pool).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO users (username, email, full_name, password_hash)
           SELECT 'bench_' || i, 'bench_' || i || '@example.com', 'Bench ' || i, 'not-a-login'
           FROM generate_series(1, {n}) AS i;
         INSERT INTO accounts (owner_id, currency, balance)
           SELECT i, 'USD', {OPENING_BALANCE} FROM generate_series(1, {n}) AS i;
         INSERT INTO entries (account_id, amount, deposited_by)
           SELECT i, {OPENING_BALANCE}, 1 FROM generate_series(1, {n}) AS i;
         ANALYZE;",
        n = accounts
    )))
    .execute(&pool)
    .await?;
    let mismatched: i64 = sqlx::query_scalar("SELECT count(*) FROM accounts WHERE id <> owner_id")
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(mismatched == 0, "account ids must equal owner ids");
    pool.close().await;

    if pgbench_scale > 0 {
        let init: Vec<String> = ["-i", "-q", "-s", &pgbench_scale.to_string()]
            .map(String::from)
            .into();
        let output = std::process::Command::new("pgbench")
            .args(&init)
            .arg(database_url)
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "pgbench -i failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}
