//! The ledger's benchmark data and the service-layer load both benchmarks share.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::Rng as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use streambank_service::{Bank, Caller, Role, TransferRequest};

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
                let (from, to, amount) = {
                    let mut rng = rand::rng();
                    let from = rng.random_range(1..=accounts);
                    let mut to = rng.random_range(1..accounts);
                    if to >= from {
                        to += 1;
                    }
                    (from, to, rng.random_range(1..=100))
                };
                // Account i belongs to user i (see `prepare_database`).
                let caller = Caller {
                    user_id: from,
                    role: Role::Customer,
                };
                let request = TransferRequest {
                    from_account_id: from,
                    to_account_id: to,
                    amount,
                    currency: "USD",
                };
                bank.transfer(caller, None, request).await?;
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
