//! The landing page at `/` on the REST listener and on the gateway, over real sockets: a small HTML
//! page, no script, linking each listener's Swagger UI and document, the other listener, health,
//! metrics, the mail catcher and the trace viewer. It is no API operation, so neither OpenAPI document
//! lists it: the drift tests (`gateway.rs`, `input.rs`) hold both documents to their committed copies,
//! which have no `/`.

use crate::common::TestApp;
use reqwest::StatusCode;

/// The addresses a page names: this process's listeners, and the configured external pages.
fn expected_links(app: &TestApp, swagger: &str, base: &str, other: &str) -> Vec<String> {
    vec![
        format!("href=\"{swagger}\""),
        "href=\"/openapi.json\"".to_owned(),
        format!("href=\"{other}/\""),
        format!("href=\"{}/healthz\"", app.rest_base),
        format!("href=\"{}/readyz\"", app.rest_base),
        format!("href=\"{}/metrics\"", app.metrics_base),
        "href=\"http://mail.example:1080\"".to_owned(),
        "href=\"http://127.0.0.1:16686\"".to_owned(),
        format!(
            "<title>StreamBank {}",
            if base == app.rest_base {
                "REST API"
            } else {
                "HTTP/JSON gateway"
            }
        ),
    ]
}

/// `GET /` answers the page on both listeners, with every link, as HTML under a policy that allows
/// no script, style or fetch, and with the security headers every answer carries.
#[tokio::test]
async fn both_listeners_answer_a_landing_page_with_their_links() {
    let app = TestApp::spawn_with(&[("LANDING_MAIL_URL", "http://mail.example:1080")]).await;
    for (base, swagger, other) in [
        (&app.rest_base, "/swagger-ui/", &app.gateway_base),
        (&app.gateway_base, "/swagger/", &app.rest_base),
    ] {
        let response = app
            .client
            .get(format!("{base}/"))
            .send()
            .await
            .expect("GET /");
        assert_eq!(response.status(), StatusCode::OK, "{base}");
        let headers = response.headers().clone();
        assert!(
            headers["content-type"]
                .to_str()
                .is_ok_and(|ct| ct.starts_with("text/html")),
            "{base}: {headers:?}"
        );
        assert_eq!(
            headers["content-security-policy"], "default-src 'none'; frame-ancestors 'none'",
            "{base}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{base}");
        assert!(headers.contains_key("x-request-id"), "{base}");
        let page = response.text().await.expect("page");
        for link in expected_links(&app, swagger, base, other) {
            assert!(page.contains(&link), "{base}: no {link} in\n{page}");
        }
        assert!(
            !page.contains("<script") && !page.contains("<style"),
            "{page}"
        );

        // Each link on this listener answers.
        for path in [swagger, "/openapi.json"] {
            let linked = app
                .client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect("link");
            assert_eq!(linked.status(), StatusCode::OK, "{base}{path}");
        }
        let post = app
            .client
            .post(format!("{base}/"))
            .send()
            .await
            .expect("POST /");
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED, "{base}");
    }
    for path in ["/healthz", "/readyz"] {
        let health = app
            .client
            .get(format!("{}{path}", app.rest_base))
            .send()
            .await
            .expect("health");
        assert_eq!(health.status(), StatusCode::OK, "{path}");
    }
    let metrics = app
        .client
        .get(format!("{}/metrics", app.metrics_base))
        .send()
        .await
        .expect("metrics");
    assert_eq!(metrics.status(), StatusCode::OK);
}

/// A `Host` header that is not a plain host name cannot write into the page.
#[tokio::test]
async fn a_hostile_host_header_does_not_reach_the_page() {
    let app = TestApp::spawn("paseto").await;
    let page = app
        .client
        .get(format!("{}/", app.rest_base))
        .header("host", "x\"><script>alert(1)</script>")
        .send()
        .await
        .expect("GET /")
        .text()
        .await
        .expect("page");
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("http://127.0.0.1:"), "{page}");
}
