//! Findings of the security review (issue 22), each held by a test over real sockets.

mod common;

use common::TestApp;
use reqwest::{Method, StatusCode};

/// The number of series (sample lines) `/metrics` holds.
fn series(metrics: &str) -> usize {
    metrics
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count()
}

/// Sends `rounds` requests with made-up methods and paths (and a few real paths) to `base`.
async fn random_requests(app: &TestApp, base: &str, rounds: usize) {
    for _ in 0..rounds {
        let token = uuid::Uuid::new_v4().simple().to_string().to_uppercase();
        let method = Method::from_bytes(format!("X{token}").as_bytes()).expect("a method token");
        for path in [
            "/healthz".to_owned(),
            format!("/{token}"),
            format!("/v1/accounts/{token}"),
            format!("/v1/{token}/x?{token}=1"),
        ] {
            for method in [method.clone(), Method::GET, Method::PATCH] {
                let response = app
                    .client
                    .request(method, format!("{base}{path}"))
                    .send()
                    .await
                    .expect("an answer");
                assert!(
                    !response.status().is_server_error(),
                    "{path}: {}",
                    response.status()
                );
            }
        }
    }
}

/// Made-up methods and paths, on REST and on the gateway, add no series to `/metrics`: every label
/// comes from a closed set (the route template or `unmatched`, a known method or `other`).
#[tokio::test]
async fn metrics_labels_come_from_closed_sets() {
    let app = TestApp::spawn("paseto").await;
    // One round of each kind first, so that the `unmatched`/`other` series exist.
    random_requests(&app, &app.rest_base, 1).await;
    random_requests(&app, &app.gateway_base, 1).await;
    let before = app.metrics().await;

    random_requests(&app, &app.rest_base, 25).await;
    random_requests(&app, &app.gateway_base, 25).await;
    let after = app.metrics().await;

    assert_eq!(
        series(&before),
        series(&after),
        "new series appeared:\n{after}"
    );
    assert!(
        after.contains(
            "http_requests_total{route=\"/healthz\",method=\"other\",status=\"405\"} 26\n"
        ),
        "{after}"
    );
    assert!(
        after.contains("http_requests_total{route=\"unmatched\",method=\"other\",status=\"404\"}"),
        "{after}"
    );
    assert!(
        !after.contains("method=\"X"),
        "a made-up method is a label:\n{after}"
    );
}

/// `/metrics` is served on `METRICS_ADDR` only, not on the public REST or gateway listeners.
#[tokio::test]
async fn metrics_are_not_served_on_the_public_listeners() {
    let app = TestApp::spawn("paseto").await;
    for base in [&app.rest_base, &app.gateway_base] {
        let response = app
            .client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .expect("an answer");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{base}/metrics");
    }
    assert!(
        app.metrics()
            .await
            .contains("# TYPE http_requests_total counter")
    );
}
