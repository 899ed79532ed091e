//! The REST calls end-to-end tests begin with: register, log in, open and fund an account. Each
//! asserts the status the contract promises and returns what the next step needs. `base` is a
//! listener's `http://host:port` (REST or the gateway, which answer alike).

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use crate::fixtures::PASSWORD;

/// What a login answers with.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: i64,
    pub access: String,
    pub refresh: String,
    pub session_id: String,
}

/// Registers `username` at `email` with [`PASSWORD`] (`POST /v1/users`, 201) and returns the id.
pub async fn register(client: &Client, base: &str, username: &str, email: &str) -> i64 {
    let body = json!({
        "username": username,
        "full_name": format!("Test {username}"),
        "email": email,
        "password": PASSWORD,
    });
    let response = client
        .post(format!("{base}/v1/users"))
        .json(&body)
        .send()
        .await
        .expect("POST /v1/users reaches the server");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "registration of {username}"
    );
    id_of(response).await
}

/// `POST /v1/sessions` for `username` with [`PASSWORD`], whatever it answers.
pub async fn attempt_login(client: &Client, base: &str, username: &str) -> Response {
    client
        .post(format!("{base}/v1/sessions"))
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .expect("POST /v1/sessions reaches the server")
}

/// Logs `username` in with [`PASSWORD`] (201).
pub async fn login(client: &Client, base: &str, username: &str) -> Session {
    let response = attempt_login(client, base, username).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "login of {username}"
    );
    let body: Value = response.json().await.expect("a login answer in JSON");
    Session {
        user_id: body["user"]["id"].as_i64().expect("user id"),
        access: body["access_token"].as_str().expect("access").to_owned(),
        refresh: body["refresh_token"].as_str().expect("refresh").to_owned(),
        session_id: body["session_id"].as_str().expect("session id").to_owned(),
    }
}

/// Opens an account in `currency` with the owner's `token` (`POST /v1/accounts`, 201); returns its id.
pub async fn open_account(client: &Client, base: &str, token: &str, currency: &str) -> i64 {
    let response = client
        .post(format!("{base}/v1/accounts"))
        .bearer_auth(token)
        .json(&json!({"currency": currency}))
        .send()
        .await
        .expect("POST /v1/accounts reaches the server");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "opening a {currency} account"
    );
    id_of(response).await
}

/// Deposits `amount` into `account_id` with a banker's `token` (201).
pub async fn deposit(
    client: &Client,
    base: &str,
    token: &str,
    account_id: i64,
    amount: i64,
    currency: &str,
) {
    let response = client
        .post(format!("{base}/v1/accounts/{account_id}/deposits"))
        .bearer_auth(token)
        .json(&json!({"amount": amount, "currency": currency}))
        .send()
        .await
        .expect("POST /v1/accounts/{id}/deposits reaches the server");
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "deposit into {account_id}"
    );
}

async fn id_of(response: Response) -> i64 {
    response.json::<Value>().await.expect("an answer in JSON")["id"]
        .as_i64()
        .expect("an id")
}
