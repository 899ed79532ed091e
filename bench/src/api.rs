//! The API in the process, as `api-bench` and `transport-bench` run it: a fresh benchmark database whose
//! customers can log in, `streambank_api::Api` bound on port 0 of loopback over it, and one logged-in
//! customer per concurrent caller.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use streambank_api::{Api, Config};
use streambank_service::{Bank, Sessions};

use crate::ledger::{fresh_database, warm_up};

/// Every benchmark customer's password.
pub const PASSWORD: &str = "benchmark password";
/// The API's token key (`TOKEN_SYMMETRIC_KEY`), so a benchmark can verify tokens itself.
pub const KEY: &str = "bench-key-0123456789-abcdefghijk";

/// The benchmark database, ready for the API and warmed up.
#[derive(Debug)]
pub struct Database {
    pub options: PgConnectOptions,
    pub pool: PgPool,
    /// The service layer over `pool`, the one that warmed the database up.
    pub bank: Bank,
}

/// Drops and creates the benchmark database at `database_url` with `accounts` customers (see
/// [`crate::ledger::prepare_database`]) who log in with [`PASSWORD`], opens a pool of `connections` on
/// it and warms it up through the service layer. `url_var` names where the URL came from.
pub async fn prepare(
    database_url: &str,
    url_var: &str,
    accounts: i64,
    connections: usize,
) -> anyhow::Result<Database> {
    let (options, pool) = fresh_database(
        database_url,
        url_var,
        accounts,
        0,
        u32::try_from(connections)?,
    )
    .await?;
    let password = streambank_domain::Password::parse(PASSWORD).map_err(anyhow::Error::msg)?;
    let hash = streambank_service::password::hash(&password).await?;
    sqlx::query("UPDATE users SET password_hash = $1, email_verified_at = now()")
        .bind(&hash)
        .execute(&pool)
        .await?;
    let bank = Bank::new(pool.clone());
    warm_up(&bank, &pool, accounts).await?;
    Ok(Database {
        options,
        pool,
        bank,
    })
}

/// The addresses of a running API's listeners.
#[derive(Debug)]
pub struct Listeners {
    pub rest: SocketAddr,
    pub grpc: SocketAddr,
    pub gateway: SocketAddr,
    sessions: Sessions,
}

/// Binds the API on port 0 of loopback over `database_url`, with `connections` database connections
/// and no practical limit on logins, and serves it on a task of the current runtime for as long as the
/// process lives.
pub async fn start(database_url: &str, connections: usize) -> anyhow::Result<Listeners> {
    let vars = [
        ("DATABASE_URL", database_url.to_owned()),
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("GRPC_ADDR", "127.0.0.1:0".to_owned()),
        ("GATEWAY_ADDR", "127.0.0.1:0".to_owned()),
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("TOKEN_SYMMETRIC_KEY", KEY.to_owned()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("DATABASE_MAX_CONNECTIONS", connections.to_string()),
    ];
    let config = Config::from_lookup(&move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })?;
    let api = Api::bind(&config).await?;
    let listeners = Listeners {
        rest: api.http_addr()?,
        grpc: api.grpc_addr()?,
        gateway: api.gateway_addr()?,
        sessions: api.sessions(),
    };
    tokio::spawn(api.run(std::future::pending()));
    Ok(listeners)
}

impl Listeners {
    /// Waits, ten seconds at most, until authentication is answered from the session cache: that is,
    /// until the cache's invalidation listener is up.
    pub async fn session_cache_live(&self) {
        let waiting = Instant::now();
        while !self.sessions.cache_enabled() && waiting.elapsed() < Duration::from_secs(10) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A logged-in customer: user `account` owns account `account`.
#[derive(Debug, Clone)]
pub struct Customer {
    pub account: i64,
    pub token: String,
}

/// Logs in customers `1..=n` over REST; customer `i` owns account `i`.
pub async fn log_in(rest: SocketAddr, n: usize) -> anyhow::Result<Vec<Customer>> {
    let client = reqwest::Client::new();
    let mut customers = Vec::with_capacity(n);
    for user in 1..=n {
        let account = i64::try_from(user)?;
        customers.push(Customer {
            account,
            token: access_token(&client, rest, account).await?,
        });
    }
    Ok(customers)
}

/// Logs in as user `user` (`bench_{user}`) over REST; returns the access token.
pub async fn access_token(
    client: &reqwest::Client,
    rest: SocketAddr,
    user: i64,
) -> anyhow::Result<String> {
    let response = client
        .post(format!("http://{rest}/v1/sessions"))
        .json(&json!({"username": format!("bench_{user}"), "password": PASSWORD}))
        .send()
        .await
        .context("logging in")?;
    anyhow::ensure!(
        response.status() == StatusCode::CREATED,
        "login failed: {}",
        response.text().await?
    );
    let body: Value = response.json().await?;
    Ok(body["access_token"]
        .as_str()
        .context("the login answer has no access_token")?
        .to_owned())
}
