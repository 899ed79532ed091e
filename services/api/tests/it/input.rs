//! Malformed input, idempotency, health, request ids and the OpenAPI document, over HTTP.
//!
//! Malformed input: each kind of bad request is a table of (request, status, code, reason), run over
//! REST and the gateway; every one answers a 4xx in the contract's shape and writes nothing.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::{Session, TestApp, Transport, expect_error};

/// The tables a refused request must leave as they were.
const TABLES: [&str; 5] = ["users", "accounts", "transfers", "entries", "outbox"];

/// Ann and Bob with a USD account each (Ann's holding 1,000), and the row counts after that.
struct Refusals {
    app: TestApp,
    ann: Session,
    from: i64,
    to: i64,
    counts: Vec<i64>,
}

impl Refusals {
    async fn new(transport: Transport) -> Self {
        let app = TestApp::spawn_on(transport, "paseto").await;
        let ann = app.customer("ann").await;
        let bob = app.customer("bob").await;
        let banker = app.banker("banker").await;
        let from = app.open_account(&ann, "USD").await;
        let to = app.open_account(&bob, "USD").await;
        app.deposit(&banker, from, 1_000, "USD").await;
        let mut counts = Vec::new();
        for table in TABLES {
            counts.push(app.db.count(table).await);
        }
        Self {
            app,
            ann,
            from,
            to,
            counts,
        }
    }

    /// A transfer body `{from, to, amount, currency}` with `amount` and `currency` as JSON text.
    fn transfer(&self, amount: &str, currency: &str) -> String {
        format!(
            r#"{{"from_account_id": {}, "to_account_id": {}, "amount": {amount}, "currency": {currency}}}"#,
            self.from, self.to
        )
    }

    async fn assert_nothing_written(&self) {
        for (table, before) in TABLES.into_iter().zip(&self.counts) {
            assert_eq!(self.app.db.count(table).await, *before, "{table} changed");
        }
    }
}

/// The first field violation of an error body.
fn first_violation(body: &Value) -> &Value {
    &body["error"]["details"]["field_violations"][0]
}

/// A transfer body that is not the request's JSON is 400 `MALFORMED_REQUEST`, naming the field where
/// there is one; for what serde's derive or proto3 JSON would let through (an array of the fields in
/// order, a number as a string, null for a number) both listeners give serde's description too.
async fn malformed_transfer_bodies_are_400_naming_the_field(transport: Transport) {
    let r = Refusals::new(transport).await;
    let (from, to) = (r.from, r.to);
    // (body, sent as JSON, the field named, its description)
    let cases: Vec<(String, bool, Option<&str>, Option<&str>)> = vec![
        (
            format!(r#"[{from}, {to}, 5, "USD"]"#),
            true,
            Some("body"),
            Some("invalid type: sequence, expected a map"),
        ),
        (
            r.transfer(r#""5""#, r#""USD""#),
            true,
            Some("amount"),
            Some(r#"invalid type: string "5", expected i64"#),
        ),
        (
            format!(
                r#"{{"from_account_id": null, "to_account_id": {to}, "amount": 5, "currency": "USD"}}"#
            ),
            true,
            Some("from_account_id"),
            Some("invalid type: null, expected i64"),
        ),
        ("{\"from_account_id\": 1,".to_owned(), true, None, None),
        (
            r.transfer(r#""ten""#, r#""USD""#),
            true,
            Some("amount"),
            None,
        ),
        (
            r.transfer("99999999999999999999", r#""USD""#),
            true,
            Some("amount"),
            None,
        ),
        ("amount=5".to_owned(), false, None, None),
    ];
    for (body, as_json, field, description) in cases {
        let mut request = r
            .app
            .client
            .post(r.app.url("/v1/transfers"))
            .bearer_auth(&r.ann.access);
        if as_json {
            request = request.header("content-type", "application/json");
        }
        let response = request.body(body.clone()).send().await.expect("send");
        let error = expect_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "MALFORMED_REQUEST",
        )
        .await;
        if let Some(field) = field {
            assert_eq!(first_violation(&error)["field"], field, "{body}");
        }
        if let Some(description) = description {
            assert_eq!(
                first_violation(&error)["description"],
                description,
                "{body}"
            );
        }
    }
    r.assert_nothing_written().await;
}

/// A well-formed transfer the rules refuse answers with its own reason; one wrong in every field
/// names every field, in order.
async fn transfers_the_rules_refuse_answer_with_their_reason(transport: Transport) {
    let r = Refusals::new(transport).await;
    let (from, to) = (r.from, r.to);
    let transfer = |amount: i64, currency: &str| json!({"from_account_id": from, "to_account_id": to, "amount": amount, "currency": currency});
    // (body, code, reason, the fields named)
    let cases: Vec<(Value, &str, &str, Option<&[&str]>)> = vec![
        (
            transfer(0, "USD"),
            "invalid_argument",
            "INVALID_AMOUNT",
            None,
        ),
        (
            transfer(-5, "USD"),
            "invalid_argument",
            "INVALID_AMOUNT",
            None,
        ),
        (
            json!({"amount": -1, "currency": "XYZ"}),
            "invalid_argument",
            "INVALID_AMOUNT",
            Some(&["from_account_id", "to_account_id", "amount", "currency"]),
        ),
        (
            transfer(5, "DOGE"),
            "invalid_argument",
            "VALIDATION_FAILED",
            None,
        ),
        (
            transfer(5_000, "USD"),
            "failed_precondition",
            "INSUFFICIENT_FUNDS",
            None,
        ),
    ];
    for (body, code, reason, fields) in cases {
        let response = r.app.post("/v1/transfers", &r.ann.access, body).await;
        let error = expect_error(response, StatusCode::BAD_REQUEST, code, reason).await;
        if let Some(fields) = fields {
            let named: Vec<&str> = error["error"]["details"]["field_violations"]
                .as_array()
                .expect("violations")
                .iter()
                .map(|v| v["field"].as_str().expect("field"))
                .collect();
            assert_eq!(named, fields);
        }
    }
    r.assert_nothing_written().await;
}

/// A registration with a username that is too long, not ASCII, or SQL is 400 `VALIDATION_FAILED`
/// naming `username`.
async fn bad_usernames_are_400_naming_the_field(transport: Transport) {
    let r = Refusals::new(transport).await;
    for username in [
        "a".repeat(300),
        "ännä".to_owned(),
        "名前".to_owned(),
        "Robert'); DROP TABLE users;--".to_owned(),
    ] {
        let body = json!({"username": username, "full_name": "X", "email": "x@example.com", "password": "long enough"});
        let response = r
            .app
            .call(Method::POST, "/v1/users", None, Some(body))
            .await;
        let error = expect_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(first_violation(&error)["field"], "username", "{username}");
    }
    r.assert_nothing_written().await;
}

/// Paths and queries that do not parse are 400 (`id` named when its percent-encoding is not UTF-8,
/// which axum's own rejection would answer in plain text); an empty segment names no resource: 404.
async fn bad_paths_and_queries_are_400_and_empty_segments_404(transport: Transport) {
    let r = Refusals::new(transport).await;
    let (bad, missing) = (StatusCode::BAD_REQUEST, StatusCode::NOT_FOUND);
    // (path, status, code, reason, the field named)
    let cases = [
        (
            "/v1/accounts/abc",
            bad,
            "invalid_argument",
            "MALFORMED_REQUEST",
            None,
        ),
        (
            "/v1/accounts/%FF%FE",
            bad,
            "invalid_argument",
            "MALFORMED_REQUEST",
            Some("id"),
        ),
        (
            "/v1/transfers/%C3%28",
            bad,
            "invalid_argument",
            "MALFORMED_REQUEST",
            Some("id"),
        ),
        (
            "/v1/accounts?page_size=0",
            bad,
            "invalid_argument",
            "VALIDATION_FAILED",
            None,
        ),
        (
            "/v1/accounts?page_size=many",
            bad,
            "invalid_argument",
            "MALFORMED_REQUEST",
            None,
        ),
        (
            "/v1/accounts?page_token=zzz",
            bad,
            "invalid_argument",
            "VALIDATION_FAILED",
            None,
        ),
        ("/v1/nowhere", missing, "not_found", "ROUTE_NOT_FOUND", None),
        (
            "/v1/accounts/",
            missing,
            "not_found",
            "ROUTE_NOT_FOUND",
            None,
        ),
        (
            "/v1/accounts//entries",
            missing,
            "not_found",
            "ROUTE_NOT_FOUND",
            None,
        ),
    ];
    for (path, status, code, reason, field) in cases {
        let error = expect_error(r.app.get(path, &r.ann.access).await, status, code, reason).await;
        if let Some(field) = field {
            assert_eq!(first_violation(&error)["field"], field, "{path}");
        }
    }
    r.assert_nothing_written().await;
}

/// Size limits, alike on both listeners: a body over the limit is 413; a long bogus token is a bad
/// token (the gateway forwards it to gRPC, whose header limit is above what the HTTP listeners
/// accept); headers over 32 KiB, in one or in many, are 431.
async fn requests_over_the_size_limits_are_413_and_431(transport: Transport) {
    let r = Refusals::new(transport).await;
    let app = &r.app;
    // Forty of 1,000 bytes: each is fine, together they are over (hyper itself refuses more than 100
    // headers, before any of ours runs).
    let many: HeaderMap = (0..40)
        .map(|i| {
            (
                HeaderName::try_from(format!("x-pad-{i}")).expect("name"),
                HeaderValue::try_from("x".repeat(1000)).expect("value"),
            )
        })
        .collect();
    let too_large = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
    // (what, request, status, code, reason, a phrase of the message)
    let cases = [
        (
            "a 2 MiB body",
            app.client
                .post(app.url("/v1/accounts"))
                .bearer_auth(&r.ann.access)
                .header("content-type", "application/json")
                .body(format!(
                    "{{\"currency\": \"{}\"}}",
                    "x".repeat(2 * 1024 * 1024)
                )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_argument",
            "BODY_TOO_LARGE",
            None,
        ),
        (
            "a 20 KiB token",
            app.client
                .get(app.url("/v1/users/me"))
                .bearer_auth("x".repeat(20 * 1024)),
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "TOKEN_INVALID",
            None,
        ),
        (
            "a 40 KiB token",
            app.client
                .get(app.url("/v1/users/me"))
                .bearer_auth("x".repeat(40 * 1024)),
            too_large,
            "invalid_argument",
            "HEADERS_TOO_LARGE",
            Some("32768"),
        ),
        (
            "forty headers of 1,000 bytes",
            app.client.get(app.url("/v1/users/me")).headers(many),
            too_large,
            "invalid_argument",
            "HEADERS_TOO_LARGE",
            None,
        ),
    ];
    for (what, request, status, code, reason, phrase) in cases {
        let response = request.send().await.expect(what);
        let error = expect_error(response, status, code, reason).await;
        if let Some(phrase) = phrase {
            let message = error["error"]["message"].as_str().expect("message");
            assert!(message.contains(phrase), "{what}: {error}");
        }
    }
    r.assert_nothing_written().await;
}

async fn idempotency_keys_replay_refuse_mismatches_and_allow_one_transfer(transport: Transport) {
    let app = TestApp::spawn_on(transport, "paseto").await;
    let ann = app.customer("ann").await;
    let bob = app.customer("bob").await;
    let banker = app.banker("banker").await;
    let from = app.open_account(&ann, "EUR").await;
    let to = app.open_account(&bob, "EUR").await;
    app.deposit(&banker, from, 100_000, "EUR").await;
    let body =
        json!({"from_account_id": from, "to_account_id": to, "amount": 700, "currency": "EUR"});
    let send = |key: &'static str, body: Value| {
        app.client
            .post(app.url("/v1/transfers"))
            .bearer_auth(&ann.access)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };

    let first = send("key-1", body.clone()).await.expect("send");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.expect("json");
    let replay = send("key-1", body.clone()).await.expect("send");
    assert_eq!(replay.status(), StatusCode::CREATED);
    assert_eq!(
        replay.json::<Value>().await.expect("json"),
        first,
        "the stored body is replayed"
    );
    let mismatch = send(
        "key-1",
        json!({"from_account_id": from, "to_account_id": to, "amount": 701, "currency": "EUR"}),
    )
    .await
    .expect("send");
    expect_error(
        mismatch,
        StatusCode::UNPROCESSABLE_ENTITY,
        "failed_precondition",
        "IDEMPOTENCY_KEY_REUSED",
    )
    .await;
    assert_eq!(app.db.count("transfers").await, 1);

    // Keys are per user: bob's "key-1" is his own.
    let bob_from = app.open_account(&bob, "USD").await;
    let ann_usd = app.open_account(&ann, "USD").await;
    app.deposit(&banker, bob_from, 1_000, "USD").await;
    let bobs = app
        .client
        .post(app.url("/v1/transfers"))
        .bearer_auth(&bob.access)
        .header("idempotency-key", "key-1")
        .json(&json!({"from_account_id": bob_from, "to_account_id": ann_usd, "amount": 1, "currency": "USD"}))
        .send()
        .await
        .expect("send");
    assert_eq!(bobs.status(), StatusCode::CREATED);

    // Twenty identical requests at once: exactly one transfer; the rest replay it or are told it is running.
    let concurrent =
        json!({"from_account_id": from, "to_account_id": to, "amount": 5, "currency": "EUR"});
    let responses = futures_join(20, || send("key-concurrent", concurrent.clone())).await;
    let mut created = Vec::new();
    for response in responses {
        let response = response.expect("send");
        match response.status() {
            StatusCode::CREATED => created.push(response.json::<Value>().await.expect("json")),
            StatusCode::CONFLICT => {
                expect_error(
                    response,
                    StatusCode::CONFLICT,
                    "aborted",
                    "IDEMPOTENCY_IN_PROGRESS",
                )
                .await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(!created.is_empty());
    assert!(
        created.windows(2).all(|w| w[0] == w[1]),
        "every 201 carries the same transfer"
    );
    let transfers: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers WHERE amount = 5")
        .fetch_one(&app.db.pool)
        .await
        .expect("count");
    assert_eq!(transfers, 1);
}

async fn futures_join<F, Fut, T>(n: usize, make: F) -> Vec<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let mut pending: Vec<std::pin::Pin<Box<Fut>>> = (0..n).map(|_| Box::pin(make())).collect();
    let mut done: Vec<Option<T>> = (0..n).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all = true;
        for (i, fut) in pending.iter_mut().enumerate() {
            if done[i].is_none() {
                match fut.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => done[i] = Some(v),
                    std::task::Poll::Pending => all = false,
                }
            }
        }
        if all {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    done.into_iter().map(|v| v.expect("completed")).collect()
}

#[tokio::test]
async fn health_request_ids_and_the_openapi_document() {
    let app = TestApp::spawn("paseto").await;
    let health = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("GET");
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("GET");
    let status = ready.status();
    let body: Value = ready.json().await.expect("json");
    assert_eq!(
        status,
        StatusCode::OK,
        "Postgres and Redis must answer (start Redis with `.ci/run` or redis-server): {body}"
    );

    let echoed = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "req-123")
        .send()
        .await
        .expect("GET");
    assert_eq!(echoed.headers()["x-request-id"], "req-123");
    let generated = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("GET");
    assert!(!generated.headers()["x-request-id"].is_empty());

    let served: Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    assert_eq!(served["openapi"], "3.1.0");
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi/rest.json");
    let generated = streambank_api::rest::openapi::document_json();
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(committed_path, &generated).expect("write docs/openapi/rest.json");
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/rest.json is out of date: run `UPDATE_OPENAPI=1 cargo nextest run -p streambank-api health_request_ids` and commit it"
    );
    for path in [
        "/v1/users",
        "/v1/sessions",
        "/v1/accounts/{id}/deposits",
        "/v1/transfers",
        "/v1/notifications",
    ] {
        assert!(served["paths"][path].is_object(), "{path} is documented");
    }
    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains("http_requests_total{route=\"/healthz\",method=\"GET\",status=\"200\"} 3\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("http_request_duration_seconds_bucket{route=\"/readyz\",le=\"+Inf\"} 1\n"),
        "{metrics}"
    );
    let ui = app
        .client
        .get(app.url("/swagger-ui/"))
        .send()
        .await
        .expect("GET");
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(ui.text().await.expect("html").contains("swagger"));
}

over_both_transports!(
    malformed_transfer_bodies_are_400_naming_the_field,
    super::malformed_transfer_bodies_are_400_naming_the_field
);

over_both_transports!(
    transfers_the_rules_refuse_answer_with_their_reason,
    super::transfers_the_rules_refuse_answer_with_their_reason
);

over_both_transports!(
    bad_usernames_are_400_naming_the_field,
    super::bad_usernames_are_400_naming_the_field
);

over_both_transports!(
    bad_paths_and_queries_are_400_and_empty_segments_404,
    super::bad_paths_and_queries_are_400_and_empty_segments_404
);

over_both_transports!(
    requests_over_the_size_limits_are_413_and_431,
    super::requests_over_the_size_limits_are_413_and_431
);

over_both_transports!(
    idempotency_keys_replay_refuse_mismatches_and_allow_one_transfer,
    super::idempotency_keys_replay_refuse_mismatches_and_allow_one_transfer
);
