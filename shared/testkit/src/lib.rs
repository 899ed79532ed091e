//! The test harness: every test gets its own freshly migrated database on the real Postgres server,
//! and the users, logins and funded accounts every crate's tests begin with.
//!
//! Tests never share state, so they run in parallel, and they never skip: when Postgres cannot be
//! reached, [`TestDb::new`] fails the test with a message saying how to start it.
//!
//! # Layout
//!
//! - [`TestDb`]: creates `sbtest_<uuid>` on `DATABASE_URL`'s server (or another, [`TestDb::on`]),
//!   applies the migrations, hands out a pool, and drops the database when the test passes. A failing
//!   test keeps its database for a post-mortem and prints its name; `.ci/run` drops leftovers before
//!   each run. On a primary with a streaming replica, [`TestDb::on_replica`] waits for the database to
//!   reach the replica and gives its URL there.
//! - [`redis`] and [`redis_at`]: connections to the test Redis; [`delete_keys_under`] empties one
//!   stream prefix's keys, as a Redis that lost everything would.
//! - [`fixtures`]: users (verified, with the one test [`fixtures::PASSWORD`]) and funded accounts,
//!   made through the service layer.
//! - [`maildev`]: the emails the SMTP catcher holds for a test's addresses, their links and ids.
//! - [`rest`]: the same over REST (register, log in, open, deposit), asserting the contract's statuses.
//! - [`process`]: the real binaries as child processes, killed when the test ends.

pub mod fixtures;
pub mod maildev;
pub mod process;
pub mod rest;

use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The server tests use when `DATABASE_URL` is not set: the local development default.
pub use streambank_config::DEFAULT_DATABASE_URL;

/// A database of its own for one test.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
    pub pool: PgPool,
    pub options: PgConnectOptions,
    /// A `postgres://` URL of this database, for processes the test starts (such as `bankctl`).
    pub url: String,
}

impl TestDb {
    /// Creates and migrates a fresh database with a pool of up to 10 connections.
    pub async fn new() -> Self {
        Self::with_max_connections(10).await
    }

    /// Creates and migrates a fresh database with a pool of up to `max` connections.
    pub async fn with_max_connections(max: u32) -> Self {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
        Self::create(
            &url,
            max,
            "Start it with `pg_ctlcluster 15 main start` (or run `.ci/run`, which starts it), \
             or point DATABASE_URL at a server whose user may CREATE DATABASE.",
        )
        .await
    }

    /// Creates and migrates a fresh database, with a pool of up to 10 connections, on the server that
    /// `server_url` names (its database part is ignored), whatever `DATABASE_URL` says: for tests that
    /// need a server of their own, such as a primary with a streaming replica.
    pub async fn on(server_url: &str) -> Self {
        Self::create(
            server_url,
            10,
            "Is it started? The test that uses it says how to start it.",
        )
        .await
    }

    async fn create(url: &str, max: u32, hint: &str) -> Self {
        let server = PgConnectOptions::from_str(url)
            .unwrap_or_else(|e| panic!("{url:?} is not a Postgres URL: {e}"));
        let mut admin = PgConnection::connect_with(&server.clone().database("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot reach Postgres at {url} ({e}).\n{hint}"));
        let name = Self::unique_name();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        admin.close().await.ok();

        let options = server.database(&name);
        let pool = streambank_store::pool_options(max)
            .connect_with(options.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot connect to test database {name}: {e}"));
        streambank_store::MIGRATOR
            .run(&pool)
            .await
            .unwrap_or_else(|e| panic!("migrations failed on {name}: {e}"));
        let url = database_url_for(url, &name);
        Self {
            name,
            pool,
            options,
            url,
        }
    }

    /// This database's URL on `replica_server_url`, a streaming replica of the server it was created
    /// on, once the replica has replayed everything the primary had written when this was called (the
    /// database, its migrations and whatever the test wrote before). Panics after 30 s.
    pub async fn on_replica(&self, replica_server_url: &str) -> String {
        let written: String = sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("cannot read the WAL position of {}: {e}", self.name));
        let replica = PgConnectOptions::from_str(replica_server_url)
            .unwrap_or_else(|e| panic!("{replica_server_url:?} is not a Postgres URL: {e}"));
        let mut admin = PgConnection::connect_with(&replica.database("postgres"))
            .await
            .unwrap_or_else(|e| panic!("cannot reach the replica at {replica_server_url}: {e}"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let replayed: Option<bool> =
                sqlx::query_scalar("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn")
                    .bind(&written)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("cannot ask {replica_server_url} how far it replayed: {e}")
                    });
            match replayed {
                Some(true) => break,
                None => panic!("{replica_server_url} is not a streaming replica (not in recovery)"),
                Some(false) if std::time::Instant::now() > deadline => panic!(
                    "{replica_server_url} did not replay the primary's WAL up to {written} in 30 s"
                ),
                Some(false) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            }
        }
        admin.close().await.ok();
        database_url_for(replica_server_url, &self.name)
    }

    /// A fresh database name on the test server, not created: for tests of code that creates databases.
    pub fn unique_name() -> String {
        format!("sbtest_{}", uuid::Uuid::new_v4().simple())
    }

    /// Counts the rows of a table (for "nothing was written" assertions).
    pub async fn count(&self, table: &str) -> i64 {
        assert!(
            table.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "bad table name {table:?}"
        );
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap_or_else(|e| panic!("cannot count {table}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "test failed: its database {} is kept for inspection",
                self.name
            );
            return;
        }
        // Drop runs outside any async context we could borrow, so a short-lived thread with its own
        // runtime does the async work.
        let (options, name) = (self.options.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect_with(&options.database("postgres"))
                    .await
                    .ok()?;
                let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!(
                "could not drop test database {}; .ci/run drops leftovers",
                self.name
            );
        }
    }
}

/// The URL of the server in `DATABASE_URL` (or the default) with its database replaced by `database`.
pub fn server_url_with_database(database: &str) -> String {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned());
    database_url_for(&url, database)
}

fn database_url_for(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

/// The Redis tests use: `REDIS_URL`, or the local development default.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| streambank_config::DEFAULT_REDIS_URL.to_owned())
}

/// A connection to the test Redis at `url`, without a response timeout: on a loaded machine a reply
/// can take longer than the client's default half second, and a test should wait for it rather than
/// fail. Panics with how to start Redis when it cannot be reached.
pub async fn redis_at(url: &str) -> redis::aio::MultiplexedConnection {
    let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("REDIS_URL {url:?} is not a Redis URL: {e}"))
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot reach Redis at {url} ({e}); start it with `redis-server --daemonize yes` \
                 or run `.ci/run`"
            )
        })
}

/// A connection to the test Redis ([`redis_url`]); see [`redis_at`].
pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis_at(&redis_url()).await
}

/// Deletes every key under `<prefix>:`: what one installation (one stream prefix) sees when Redis
/// loses everything, without touching the streams of tests running beside it.
pub async fn delete_keys_under(redis: &mut (impl redis::aio::ConnectionLike + Send), prefix: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(redis)
        .await
        .unwrap_or_else(|e| panic!("KEYS {prefix}:*: {e}"));
    if keys.is_empty() {
        return;
    }
    let _: i64 = redis::cmd("DEL")
        .arg(&keys)
        .query_async(redis)
        .await
        .unwrap_or_else(|e| panic!("DEL the keys under {prefix}: {e}"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_keep_server_and_options() {
        assert_eq!(
            super::database_url_for("postgres://u@h:5/db", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            super::database_url_for("postgres://u@h:5", "x"),
            "postgres://u@h:5/x"
        );
        assert_eq!(
            super::database_url_for("postgres://h/db?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }
}
