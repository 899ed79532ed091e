//! The link in the verification email opened in a browser, over a real socket: a page for each outcome
//! (verified, already verified, not valid), and JSON for a client that does not ask for HTML.

use crate::common::{TestApp, verify_link};
use reqwest::StatusCode;

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

async fn open(app: &TestApp, link: &str, accept: &str) -> (StatusCode, String, String) {
    let response = app
        .client
        .get(format!("{}{link}", app.rest_base))
        .header("accept", accept)
        .send()
        .await
        .expect("GET the link");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.text().await.expect("body"))
}

#[tokio::test]
async fn each_outcome_of_the_link_has_its_own_page() {
    let app = TestApp::spawn("paseto").await;
    let ann = app.register("ann").await;
    let verification = app.verification(ann, "ann@example.com").await;
    let link = verify_link(&verification);

    let (status, content_type, page) = open(&app, &link, BROWSER).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("<h1>Email verified</h1>"), "{page}");

    // A second open (the mail client's preview, a double click, the back button) is not an error.
    let (status, content_type, page) = open(&app, &link, BROWSER).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("<h1>Already verified</h1>"), "{page}");
    assert!(!page.contains("not valid"), "{page}");

    // A wrong code: the third page, and nothing about whether the id exists.
    let wrong = format!(
        "/v1/users/verify-email?id={}&code={}",
        verification.id,
        "0".repeat(64)
    );
    let (status, content_type, page) = open(&app, &wrong, BROWSER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(page.contains("<h1>Link not valid</h1>"), "{page}");
    assert!(page.contains("expired"), "{page}");

    // API clients (no `text/html` in Accept, as curl's `*/*`) keep getting JSON, for every outcome.
    let (status, content_type, body) = open(&app, &link, "*/*").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["verified"], true);
    assert_eq!(body["user_id"], ann);
    let (status, content_type, body) = open(&app, &wrong, "application/json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert!(body.contains("VERIFICATION_INVALID"), "{body}");
}

#[tokio::test]
async fn an_expired_link_answers_the_not_valid_page() {
    let app = TestApp::spawn("paseto").await;
    let bob = app.register("bob").await;
    let verification = app.verification(bob, "bob@example.com").await;
    sqlx::query("UPDATE verify_emails SET expires_at = now() - interval '1 minute' WHERE id = $1")
        .bind(verification.id)
        .execute(&app.db.pool)
        .await
        .expect("expire the link");
    let link = verify_link(&verification);
    let (status, _, page) = open(&app, &link, BROWSER).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("<h1>Link not valid</h1>"), "{page}");
    let (status, _, body) = open(&app, &link, "application/json").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("VERIFICATION_INVALID"), "{body}");
}
