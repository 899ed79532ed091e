//! The whole journey over HTTP, once with each token format and over each transport: register,
//! verify by the link, log in, move money and read it back, log out, shut down cleanly.

use crate::common::{PASSWORD, TestApp, Transport, expect_error, verify_link};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn journey(transport: Transport, token_kind: &str) {
    let app = TestApp::spawn_on(transport, token_kind).await;
    register_and_verify_by_the_link(&app, transport).await;
    let ann = log_in_by_email(&app).await;
    move_money_and_read_it_back(&app, &ann).await;
    log_out(&app, &ann).await;
    app.shutdown().await.expect("clean shutdown");
}

/// Ann registers; logging in before the email is verified is refused (after the password is
/// checked); the link verifies the address, and opening it again is not an error.
async fn register_and_verify_by_the_link(app: &TestApp, transport: Transport) {
    let ann_id = app.register("ann").await;
    let early = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"username": "ann", "password": PASSWORD})),
        )
        .await;
    expect_error(
        early,
        StatusCode::BAD_REQUEST,
        "failed_precondition",
        "EMAIL_NOT_VERIFIED",
    )
    .await;

    // The link from the verification email.
    let link = verify_link(&app.verification(ann_id, "ann@example.com").await);
    let page = app
        .client
        .get(app.url(&link))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .expect("GET link");
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.text().await.expect("body");
    match transport {
        // The link in the email points at PUBLIC_BASE_URL, the REST listener, which answers a browser
        // with a page; the gateway answers every call in JSON.
        Transport::Rest => assert!(page.contains("Email verified"), "{page}"),
        Transport::Gateway => assert!(page.contains("\"verified\":true"), "{page}"),
    }
    // Opening the link again is not an error: the address is verified.
    let again = app
        .client
        .get(app.url(&link))
        .header("accept", "application/json")
        .send()
        .await
        .expect("GET");
    assert_eq!(again.status(), StatusCode::OK);
    let again: Value = again.json().await.expect("json");
    assert_eq!(again["verified"], true);
    assert_eq!(again["user_id"], ann_id);
}

/// Ann logs in with her email address, in another case; her token reads her profile. Returns it.
async fn log_in_by_email(app: &TestApp) -> String {
    let response = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"email": "ANN@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let login: Value = response.json().await.expect("json");
    assert_eq!(login["user"]["email_verified"], true);
    let ann = login["access_token"].as_str().expect("token").to_owned();

    let me: Value = app
        .get("/v1/users/me", &ann)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(me["username"], "ann");
    ann
}

/// Bob and a banker join; Ann opens an account, is funded and transfers to Bob; the statement, the
/// transfer, Bob's history, the account list and the notifications read it back.
async fn move_money_and_read_it_back(app: &TestApp, ann: &str) {
    let bob = app.customer("bob").await;
    let banker = app.banker("banker").await;
    let ann_usd = app
        .post("/v1/accounts", ann, json!({"currency": "USD"}))
        .await;
    assert_eq!(ann_usd.status(), StatusCode::CREATED);
    let ann_usd = ann_usd.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let bob_usd = app.open_account(&bob, "USD").await;

    app.deposit(&banker, ann_usd, 10_000, "USD").await;
    let transfer = app
        .post("/v1/transfers", ann, json!({"from_account_id": ann_usd, "to_account_id": bob_usd, "amount": 2_500, "currency": "USD"}))
        .await;
    assert_eq!(transfer.status(), StatusCode::CREATED);
    let transfer: Value = transfer.json().await.expect("json");
    assert_eq!(transfer["from_account"]["balance"], 7_500);
    assert!(
        transfer.get("to_account").is_none(),
        "the destination is not the caller's: {transfer}"
    );
    assert_eq!(transfer["from_entry"]["amount"], -2_500);
    let transfer_id = transfer["transfer"]["id"].as_i64().expect("id");

    let statement: Value = app
        .get(&format!("/v1/accounts/{ann_usd}/entries"), ann)
        .await
        .json()
        .await
        .expect("json");
    let amounts: Vec<i64> = statement["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e["amount"].as_i64().expect("amount"))
        .collect();
    assert_eq!(amounts, [-2_500, 10_000]);
    let seen: Value = app
        .get(&format!("/v1/transfers/{transfer_id}"), &bob.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(seen["amount"], 2_500);
    let history: Value = app
        .get(&format!("/v1/transfers?account_id={bob_usd}"), &bob.access)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(history["transfers"][0]["id"], transfer_id);
    let accounts: Value = app
        .get("/v1/accounts?page_size=10", ann)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(accounts["accounts"].as_array().expect("accounts").len(), 1);
    let notifications = app.get("/v1/notifications", ann).await;
    assert_eq!(notifications.status(), StatusCode::OK);
}

/// Logging out stops the access token at once.
async fn log_out(app: &TestApp, ann: &str) {
    let logout = app
        .call(Method::DELETE, "/v1/sessions/current", Some(ann), None)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.get("/v1/users/me", ann).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;
}

async fn with_paseto(transport: Transport) {
    journey(transport, "paseto").await;
}

async fn with_jwt(transport: Transport) {
    journey(transport, "jwt").await;
}

over_both_transports!(journey_with_paseto, super::with_paseto);
over_both_transports!(journey_with_jwt, super::with_jwt);
