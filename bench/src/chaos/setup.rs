//! The run's data, made the way users make it: a banker created with `bankctl users create --role banker
//! --verified`; customers registered through the REST API (so each gets exactly one verification email),
//! verified by opening the link in that email as received by the SMTP sink, logged in, each with one USD
//! account, and one deposit each by the banker. The database itself is created fresh with `bankctl
//! migrate` and dropped at the end.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::procs::Cluster;
use super::smtp::SmtpSink;

const PASSWORD: &str = "chaos-harness-password";
/// Each customer's deposit: large enough that no transfer of the run is refused for lack of funds.
pub const DEPOSIT: i64 = 10_000_000;

#[derive(Debug, Clone)]
pub struct Customer {
    pub user_id: i64,
    pub email: String,
    pub token: String,
    pub account: i64,
}

#[derive(Debug, Clone)]
pub struct World {
    pub customers: Vec<Customer>,
    /// The sum of every deposit: what the balances must add up to.
    pub deposited: i64,
}

/// Drops the database if it exists (a leftover of a run that was killed).
pub async fn drop_database(postgres: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = PgConnection::connect(&format!("{postgres}/postgres"))
        .await
        .context("connecting to Postgres")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    Ok(())
}

async fn json_or_error(response: reqwest::Response, what: &str) -> anyhow::Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{what}: {status} {body}");
    Ok(body)
}

/// Registers, verifies, logs in and funds `n` customers; creates the banker first.
pub async fn populate(
    cluster: &Cluster,
    sink: &SmtpSink,
    http: &reqwest::Client,
    n: usize,
) -> anyhow::Result<World> {
    cluster
        .bankctl(
            &[
                "users",
                "create",
                "--username",
                "chaos_banker",
                "--email",
                "banker@chaos.test",
                "--full-name",
                "Chaos Banker",
                "--role",
                "banker",
                "--verified",
            ],
            &[("BANKCTL_PASSWORD", PASSWORD)],
        )
        .await?;
    let base = format!("http://{}", cluster.api_addrs.rest);
    let limit = Arc::new(Semaphore::new(8));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (http, base, limit) = (http.clone(), base.clone(), Arc::clone(&limit));
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let body = json!({
                "username": format!("chaos_c{i:05}"),
                "full_name": format!("Chaos Customer {i}"),
                "email": format!("c{i:05}@chaos.test"),
                "password": PASSWORD,
            });
            let response = http
                .post(format!("{base}/v1/users"))
                .json(&body)
                .send()
                .await?;
            let user = json_or_error(response, "registering a customer").await?;
            anyhow::Ok((i, user["id"].as_i64().context("user id")?))
        });
    }
    let mut ids = vec![0; n];
    while let Some(done) = tasks.join_next().await {
        let (i, id) = done??;
        ids[i] = id;
    }

    // Each customer's verification email, then its link.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let links = loop {
        let mails = sink.mails();
        let links: Vec<Option<String>> = (0..n)
            .map(|i| {
                let email = format!("c{i:05}@chaos.test");
                mails
                    .iter()
                    .filter(|m| m.is_verification() && m.recipients.contains(&email))
                    .find_map(|m| m.body.as_deref().and_then(link))
            })
            .collect();
        let missing = links.iter().filter(|l| l.is_none()).count();
        if missing == 0 {
            break links.into_iter().flatten().collect::<Vec<_>>();
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "{missing} of {n} verification emails (with a link) did not arrive within 90 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (i, link) in links.iter().enumerate() {
        let path = link
            .find("/v1/")
            .map(|at| &link[at..])
            .context("a verification link without /v1/")?;
        let response = http.get(format!("{base}{path}")).send().await?;
        let status = response.status();
        anyhow::ensure!(
            status.is_success(),
            "opening the verification link of c{i:05}@chaos.test, {link}, answered {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }

    let banker = log_in(http, &base, "chaos_banker").await?.0;
    let mut customers = Vec::with_capacity(n);
    for (i, user_id) in ids.into_iter().enumerate() {
        let (token, logged_in) = log_in(http, &base, &format!("chaos_c{i:05}")).await?;
        anyhow::ensure!(logged_in == user_id, "logged in as someone else");
        let response = http
            .post(format!("{base}/v1/accounts"))
            .bearer_auth(&token)
            .json(&json!({"currency": "USD"}))
            .send()
            .await?;
        let account = json_or_error(response, "opening an account").await?["id"]
            .as_i64()
            .context("account id")?;
        let response = http
            .post(format!("{base}/v1/accounts/{account}/deposits"))
            .bearer_auth(&banker)
            .json(&json!({"amount": DEPOSIT, "currency": "USD"}))
            .send()
            .await?;
        json_or_error(response, "depositing").await?;
        customers.push(Customer {
            user_id,
            email: format!("c{i:05}@chaos.test"),
            token,
            account,
        });
    }
    Ok(World {
        deposited: DEPOSIT * i64::try_from(n)?,
        customers,
    })
}

/// The verification link in an email body.
fn link(body: &str) -> Option<String> {
    let start = body.find("http")?;
    let rest = &body[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

async fn log_in(
    http: &reqwest::Client,
    base: &str,
    username: &str,
) -> anyhow::Result<(String, i64)> {
    let response = http
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await?;
    let body = json_or_error(response, "logging in").await?;
    Ok((
        body["access_token"]
            .as_str()
            .context("access_token")?
            .to_owned(),
        body["user"]["id"].as_i64().context("user id")?,
    ))
}
