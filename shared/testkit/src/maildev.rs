//! The SMTP catcher the tests read emails back from: maildev, taking mail on 127.0.0.1:1025 (the
//! worker's default `SMTP_URL`) and answering its HTTP API at `MAILDEV_URL`, by default
//! `http://127.0.0.1:1080`. Each test sends to a domain of its own, so it reads only its own emails.

use reqwest::Client;
use serde_json::Value;

/// maildev's HTTP API: `MAILDEV_URL`, else `http://127.0.0.1:1080`.
pub fn url() -> String {
    std::env::var("MAILDEV_URL").unwrap_or_else(|_| "http://127.0.0.1:1080".to_owned())
}

/// Fails the test, saying how to start it, unless maildev answers.
pub async fn check(http: &Client) {
    let answer = http.get(format!("{}/email", url())).send().await;
    assert!(
        answer.is_ok_and(|r| r.status().is_success()),
        "the SMTP catcher is not running at {}: start it with \
         `maildev --smtp 1025 --web 1080 --ip 127.0.0.1` (npm install -g maildev@2.2.1), or run `.ci/run`",
        url()
    );
}

/// Every email maildev holds that is addressed to someone for whom `to` says yes.
async fn mails_where(http: &Client, to: impl Fn(&str) -> bool) -> Vec<Value> {
    let all: Vec<Value> = http
        .get(format!("{}/email", url()))
        .send()
        .await
        .expect("maildev's email list")
        .json()
        .await
        .expect("maildev answers JSON");
    all.into_iter()
        .filter(|m| {
            m["to"]
                .as_array()
                .is_some_and(|list| list.iter().any(|t| t["address"].as_str().is_some_and(&to)))
        })
        .collect()
}

/// The emails to `address`.
pub async fn mails_to(http: &Client, address: &str) -> Vec<Value> {
    mails_where(http, |to| to == address).await
}

/// The emails to any address at `domain`.
pub async fn mails_to_domain(http: &Client, domain: &str) -> Vec<Value> {
    let suffix = format!("@{domain}");
    mails_where(http, |to| to.ends_with(&suffix)).await
}

/// The verification link in an email's text, checked to be clickable in its HTML alternative too.
pub fn verification_link(mail: &Value) -> String {
    let text = mail["text"].as_str().expect("text body");
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/v1/users/verify-email?"))
        .expect("a verification link")
        .to_owned();
    let html = mail["html"].as_str().expect("an HTML alternative");
    assert!(
        html.contains(&format!("<a href=\"{}\">", link.replace('&', "&amp;"))),
        "the link can be clicked: {html}"
    );
    link
}

/// The emails' `Message-ID`s, each checked to name the event it was sent for.
pub fn message_ids(mails: &[Value]) -> Vec<String> {
    mails
        .iter()
        .map(|m| {
            assert!(
                m["headers"]["x-streambank-event-id"].is_string(),
                "every email names its event: {m}"
            );
            m["headers"]["message-id"]
                .as_str()
                .expect("a Message-ID")
                .to_owned()
        })
        .collect()
}
