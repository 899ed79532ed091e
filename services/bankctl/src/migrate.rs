//! `bankctl migrate`: create the database named in `DATABASE_URL` when it is missing, then apply the
//! migrations. Safe to run any number of times, and from several places at once (sqlx serialises
//! concurrent migrators with an advisory lock).

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// The line printed when Postgres does not answer.
pub fn unreachable(options: &PgConnectOptions, err: &sqlx::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot reach Postgres at {}:{} ({}); is it running?",
        options.get_host(),
        options.get_port(),
        first_line(err)
    )
}

fn first_line(err: &sqlx::Error) -> String {
    err.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

pub async fn run(options: &PgConnectOptions) -> anyhow::Result<String> {
    let database = options
        .get_database()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?
        .to_owned();
    let created = create_database_if_missing(options, &database).await?;

    let mut conn = PgConnection::connect_with(options)
        .await
        .map_err(|e| unreachable(options, &e))?;
    let before = applied(&mut conn).await;
    streambank_store::MIGRATOR
        .run(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("migration failed on database {database}: {e}"))?;
    let after = applied(&mut conn).await;
    conn.close().await.ok();

    Ok(format!(
        "database {database}{}: {} migration(s) applied now, {after} in all",
        if created { " created" } else { " ready" },
        after - before
    ))
}

/// Connects to the server's `postgres` database and creates `database` unless it exists.
async fn create_database_if_missing(
    options: &PgConnectOptions,
    database: &str,
) -> anyhow::Result<bool> {
    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .map_err(|e| unreachable(options, &e))?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", database.replace('"', "\"\""));
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {quoted}")))
            .execute(&mut admin)
            .await;
        match created {
            Ok(_) => {}
            // Another migrator created it between our check and our CREATE: that is fine.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {
                return Ok(false);
            }
            Err(e) => return Err(anyhow::anyhow!("cannot create database {database}: {e}")),
        }
    }
    admin.close().await.ok();
    Ok(!exists)
}

/// How many migrations the database records as applied (0 before the first run).
async fn applied(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(conn)
        .await
        .unwrap_or(0)
}
