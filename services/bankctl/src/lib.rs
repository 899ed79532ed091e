//! `bankctl`, StreamBank's operator command line.
//!
//! Every command prints one line on success and exits 0; on failure it prints one line saying what went
//! wrong (never a backtrace) and exits non-zero, so it behaves in scripts, Kubernetes Jobs and compose
//! `service_completed_successfully` dependencies.
//!
//! # Layout
//!
//! - [`Cli`]: the commands and their flags.
//! - [`run`]: carries out a parsed command against `DATABASE_URL`.
//! - [`migrate`]: creates the database if needed and applies the migrations.
//! - [`events`]: republishing the outbox and handling dead letters.
//! - [`demo`]: the walkthrough in one command, over the REST API.

pub mod demo;
pub mod events;
pub mod migrate;

use clap::{Parser, Subcommand};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use streambank_domain::Role;
use streambank_service::{Bank, RegisterUser, UserOptions};

#[derive(Debug, Parser)]
#[command(name = "bankctl", version, about = "Operate a StreamBank installation")]
pub struct Cli {
    /// The Postgres database to operate on.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = streambank_config::DEFAULT_DATABASE_URL,
        global = true
    )]
    pub database_url: String,

    /// Redis, where `dlq replay` puts entries back.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = streambank_config::DEFAULT_REDIS_URL,
        global = true
    )]
    pub redis_url: String,

    /// The prefix of the stream keys.
    #[arg(long, env = "STREAM_PREFIX", default_value = "bank", global = true)]
    pub stream_prefix: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if it does not exist and apply every pending migration (idempotent).
    Migrate,
    /// Manage users.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// The transactional outbox.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// Dead letters: stream entries a consumer group gave up on (kept in Postgres).
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Create a banker, two customers with accounts and money, and make a transfer over the REST API,
    /// printing each step, the tokens to reuse and where to look. Safe to run again (new names each run).
    Demo {
        /// The REST API.
        #[arg(long, env = "DEMO_API_URL", default_value = "http://localhost:8080")]
        api_url: String,
        /// The mail catcher's HTTP API (maildev), where the verification emails are read.
        #[arg(long, env = "DEMO_MAIL_URL", default_value = "http://localhost:1080")]
        mail_url: String,
        /// The trace viewer (Jaeger UI).
        #[arg(long, env = "DEMO_TRACE_URL", default_value = "http://localhost:16686")]
        trace_url: String,
        /// Seconds to wait for each verification email before verifying in the database instead.
        #[arg(long, default_value_t = 20)]
        mail_wait_secs: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCommand {
    /// Publish retained events created since a time again (to repair a Redis that lost its data).
    Republish {
        /// RFC 3339, e.g. 2026-11-25T10:00:00Z.
        #[arg(long)]
        since: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List the dead letters not yet replayed, with their errors.
    List,
    /// Put a dead letter's entry back on its stream.
    Replay {
        /// The dead letter's id (the first column of `dlq list`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user, e.g. the first banker.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        full_name: String,
        /// The password (prefer the BANKCTL_PASSWORD environment variable, which stays out of shell history).
        #[arg(long, env = "BANKCTL_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "customer", value_parser = parse_role)]
        role: Role,
        /// Mark the email address as verified.
        #[arg(long)]
        verified: bool,
    },
    /// Give an existing user a role.
    GrantRole {
        #[arg(long)]
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
}

fn parse_role(raw: &str) -> Result<Role, String> {
    raw.parse()
}

/// Runs a command; the `Ok` string is the line to print.
pub async fn run(cli: Cli) -> anyhow::Result<String> {
    let options: PgConnectOptions = cli
        .database_url
        .parse()
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid Postgres URL: {e}"))?;
    match cli.command {
        Command::Migrate => migrate::run(&options).await,
        Command::Outbox {
            command: OutboxCommand::Republish { since },
        } => events::republish(&options, &since).await,
        Command::Dlq {
            command: DlqCommand::List,
        } => events::dlq_list(&options).await,
        Command::Dlq {
            command: DlqCommand::Replay { id },
        } => events::dlq_replay(&options, &cli.redis_url, &id).await,
        Command::Demo {
            api_url,
            mail_url,
            trace_url,
            mail_wait_secs,
        } => {
            let demo = demo::DemoOptions {
                api_url,
                mail_url,
                trace_url,
                stream_prefix: cli.stream_prefix,
                mail_wait: std::time::Duration::from_secs(mail_wait_secs),
            };
            demo::run(&options, &demo).await
        }
        Command::Users { command } => {
            let bank = Bank::new(connect(&options).await?);
            match command {
                UsersCommand::Create {
                    username,
                    email,
                    full_name,
                    password,
                    role,
                    verified,
                } => {
                    let input = RegisterUser {
                        username,
                        email,
                        full_name,
                        password,
                    };
                    let user = bank
                        .create_user(input, UserOptions { role, verified })
                        .await
                        .map_err(describe)?;
                    Ok(format!(
                        "created user {} (id {}, role {})",
                        user.username, user.id, user.role
                    ))
                }
                UsersCommand::GrantRole { username, role } => {
                    let user = bank.grant_role(&username, role).await.map_err(describe)?;
                    Ok(format!("user {} now has role {}", user.username, user.role))
                }
            }
        }
    }
}

pub(crate) async fn connect(options: &PgConnectOptions) -> anyhow::Result<PgPool> {
    streambank_store::pool_options(2)
        .connect_with(options.clone())
        .await
        .map_err(|e| migrate::unreachable(options, &e))
}

/// One line for a service-layer error, with every bad field named.
pub(crate) fn describe(err: streambank_service::Error) -> anyhow::Error {
    let fields: Vec<String> = err
        .violations()
        .iter()
        .map(|v| format!("{} {}", v.field, v.description))
        .collect();
    if fields.is_empty() {
        anyhow::anyhow!("{err}")
    } else {
        anyhow::anyhow!("{err}: {}", fields.join("; "))
    }
}
