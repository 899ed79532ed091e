//! `bankctl demo`: the walkthrough in one command, over the REST API as any client would call it.
//!
//! It creates a banker (in the database, as an operator does: registration only makes customers), two
//! customers who register, verify their address with the link from their email and log in, opens an
//! account for each, has the banker deposit into the first, and transfers from the first to the second.
//! Every step is printed with what it called and what came back. Names carry a suffix of the run, so
//! the demo can be run again and again on the same database.

use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use streambank_domain::Role;
use streambank_service::{Bank, RegisterUser, UserOptions};

/// Where the demo talks to and where it tells the reader to look.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The REST listener, e.g. `http://localhost:8080`.
    pub api_url: String,
    /// The mail catcher's HTTP API (maildev's `GET /email`), e.g. `http://localhost:1080`.
    pub mail_url: String,
    /// The trace viewer, e.g. `http://localhost:16686`.
    pub trace_url: String,
    /// The prefix of the stream keys.
    pub stream_prefix: String,
    /// How long to wait for each verification email before verifying in the database instead.
    pub mail_wait: Duration,
}

const PASSWORD: &str = "demo password 1234";

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    /// Calls the API and returns the JSON body of a success; any other status stops the demo with the
    /// API's error body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.request(method.clone(), &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.with_context(|| {
            format!("{method} {url}: the API does not answer (is scripts/dev.sh running?)")
        })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if !status.is_success() {
            bail!("{method} {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("{method} {path}: not JSON: {text}"))
    }
}

fn field<'a>(value: &'a Value, pointer: &str) -> anyhow::Result<&'a Value> {
    value
        .pointer(pointer)
        .with_context(|| format!("the answer has no {pointer}: {value}"))
}

fn int(value: &Value, pointer: &str) -> anyhow::Result<i64> {
    field(value, pointer)?
        .as_i64()
        .with_context(|| format!("{pointer} is not a number: {value}"))
}

fn text(value: &Value, pointer: &str) -> anyhow::Result<String> {
    Ok(field(value, pointer)?
        .as_str()
        .with_context(|| format!("{pointer} is not a string: {value}"))?
        .to_owned())
}

fn euros(minor: i64) -> String {
    format!("{}.{:02} EUR", minor / 100, minor % 100)
}

/// Runs the demo; prints each step and returns the closing line.
pub async fn run(options: &PgConnectOptions, demo: &DemoOptions) -> anyhow::Result<String> {
    let api = Api {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build an HTTP client")?,
        base: demo.api_url.trim_end_matches('/').to_owned(),
    };
    let run_id = &uuid::Uuid::new_v4().simple().to_string()[..6];
    let domain = "demo.example.com";
    println!("StreamBank demo (run {run_id}) against {}", api.base);

    api.call(reqwest::Method::GET, "/readyz", None, None, &[])
        .await
        .context("the API is not ready")?;

    // 1. The banker: created by an operator, as in production.
    let bank = Bank::new(crate::connect(options).await?);
    let banker_name = format!("banker_{run_id}");
    bank.create_user(
        RegisterUser {
            username: banker_name.clone(),
            email: format!("{banker_name}@{domain}"),
            full_name: "Demo Banker".into(),
            password: PASSWORD.into(),
        },
        UserOptions {
            role: Role::Banker,
            verified: true,
        },
    )
    .await
    .map_err(crate::describe)?;
    println!(
        "\n1. banker {banker_name} created in the database (bankctl users create --role banker --verified)"
    );

    // 2. Two customers register over the API and verify their address with the emailed link.
    let mut customers = Vec::new();
    for (name, full_name) in [("ann", "Ann Demo"), ("bob", "Bob Demo")] {
        let username = format!("{name}_{run_id}");
        let email = format!("{username}@{domain}");
        let user = api
            .call(
                reqwest::Method::POST,
                "/v1/users",
                None,
                Some(json!({"username": username, "full_name": full_name, "email": email, "password": PASSWORD})),
                &[],
            )
            .await?;
        let id = int(&user, "/id")?;
        println!(
            "\n2. POST /v1/users -> customer {username} (id {id}), a verification email to {email}"
        );
        verify(&api, &bank, demo, id, &email).await?;
        customers.push(username);
    }

    // 3. Everyone logs in.
    let mut tokens = Vec::new();
    for username in [&banker_name, &customers[0], &customers[1]] {
        let login = api
            .call(
                reqwest::Method::POST,
                "/v1/sessions",
                None,
                Some(json!({"username": username, "password": PASSWORD})),
                &[],
            )
            .await?;
        tokens.push(text(&login, "/access_token")?);
    }
    println!(
        "\n3. POST /v1/sessions -> an access token for {banker_name}, {} and {}",
        customers[0], customers[1]
    );

    // 4. An account each, and money from the banker.
    let mut accounts = Vec::new();
    for (username, token) in customers.iter().zip(&tokens[1..]) {
        let account = api
            .call(
                reqwest::Method::POST,
                "/v1/accounts",
                Some(token),
                Some(json!({"currency": "EUR"})),
                &[],
            )
            .await?;
        let id = int(&account, "/id")?;
        println!("\n4. POST /v1/accounts -> EUR account {id} for {username}");
        accounts.push(id);
    }
    let deposit = api
        .call(
            reqwest::Method::POST,
            &format!("/v1/accounts/{}/deposits", accounts[0]),
            Some(&tokens[0]),
            Some(json!({"amount": 10_000, "currency": "EUR"})),
            &[],
        )
        .await?;
    println!(
        "   POST /v1/accounts/{}/deposits (as {banker_name}) -> balance {}",
        accounts[0],
        euros(int(&deposit, "/account/balance")?)
    );

    // 5. The transfer, in a trace of our own choosing so the viewer can be opened on it directly.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!(
        "00-{trace_id}-{}-01",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let idempotency_key = format!("demo-{run_id}");
    let transfer = api
        .call(
            reqwest::Method::POST,
            "/v1/transfers",
            Some(&tokens[1]),
            Some(json!({"from_account_id": accounts[0], "to_account_id": accounts[1], "amount": 2_500, "currency": "EUR"})),
            &[("idempotency-key", &idempotency_key), ("traceparent", &traceparent)],
        )
        .await?;
    println!(
        "\n5. POST /v1/transfers (as {}, Idempotency-Key {idempotency_key}) -> transfer {}: {} now {}",
        customers[0],
        int(&transfer, "/transfer/id")?,
        customers[0],
        euros(int(&transfer, "/from_account/balance")?),
    );
    let to = api
        .call(
            reqwest::Method::GET,
            &format!("/v1/accounts/{}", accounts[1]),
            Some(&tokens[2]),
            None,
            &[],
        )
        .await?;
    println!(
        "   GET /v1/accounts/{} (as {}) -> {} now {}",
        accounts[1],
        customers[1],
        customers[1],
        euros(int(&to, "/balance")?)
    );

    let base = &api.base;
    let prefix = &demo.stream_prefix;
    println!(
        "\nTokens to reuse (valid for the access token's lifetime):\n  \
         export BANKER_TOKEN={}\n  export ANN_TOKEN={}\n  export BOB_TOKEN={}\n\
         \nTry:\n  curl -s -H \"Authorization: Bearer $ANN_TOKEN\" {base}/v1/accounts/{}/entries\n  \
         curl -s -H \"Authorization: Bearer $BOB_TOKEN\" {base}/v1/notifications\n\
         \nWhere to look:\n  \
         mail          {}  (the verification emails; the link opens a page)\n  \
         stream        redis-cli XRANGE {prefix}:events:transfers - +\n  \
         trace         {}/trace/{trace_id}  (api, relay and worker spans of the transfer)\n  \
         Swagger UI    {base}/swagger-ui/",
        tokens[0],
        tokens[1],
        tokens[2],
        accounts[0],
        demo.mail_url.trim_end_matches('/'),
        demo.trace_url.trim_end_matches('/'),
    );
    Ok(format!("\ndemo done: trace id {trace_id}"))
}

/// Opens the link of the verification email as a person would; when no email arrives in time (no worker
/// or mail catcher running), says so and verifies the address in the database instead.
async fn verify(
    api: &Api,
    bank: &Bank,
    demo: &DemoOptions,
    user_id: i64,
    email: &str,
) -> anyhow::Result<()> {
    let mail_url = format!("{}/email", demo.mail_url.trim_end_matches('/'));
    let started = std::time::Instant::now();
    loop {
        if let Some(link) = find_link(&api.client, &mail_url, email).await {
            let answer = api
                .client
                .get(&link)
                .header("accept", "application/json")
                .send()
                .await
                .with_context(|| format!("GET {link}"))?;
            let status = answer.status();
            if !status.is_success() {
                bail!(
                    "the verification link answered {status}: {}",
                    answer.text().await.unwrap_or_default()
                );
            }
            println!(
                "   the email arrived at {}; its link answered {status}: address verified",
                demo.mail_url
            );
            return Ok(());
        }
        if started.elapsed() >= demo.mail_wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    bank.mark_email_verified(user_id)
        .await
        .map_err(crate::describe)?;
    println!(
        "   no email reached {mail_url} within {}s (is the worker running, and maildev?); verified in the database instead",
        demo.mail_wait.as_secs()
    );
    Ok(())
}

/// The verification link in the newest email to `address` held by maildev, if any.
async fn find_link(client: &reqwest::Client, mail_url: &str, address: &str) -> Option<String> {
    let emails: Vec<Value> = client.get(mail_url).send().await.ok()?.json().await.ok()?;
    emails
        .iter()
        .rev()
        .filter(|mail| {
            mail["to"].as_array().is_some_and(|to| {
                to.iter().any(|t| {
                    t["address"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case(address))
                })
            })
        })
        .find_map(|mail| {
            let body = mail["text"].as_str()?;
            let start = body.find("http")?;
            let link: String = body[start..]
                .chars()
                .take_while(|c| !c.is_whitespace())
                .collect();
            link.contains("/v1/users/verify-email?").then_some(link)
        })
}
