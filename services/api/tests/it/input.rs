//! Malformed input, idempotency, health, request ids and the OpenAPI document, over HTTP.

use crate::common::{TestApp, Transport, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn malformed_input_is_a_4xx_in_the_contract_shape_and_writes_nothing(transport: Transport) {
    let app = TestApp::spawn_on(transport, "paseto").await;
    let ann = app.customer("ann").await;
    let bob = app.customer("bob").await;
    let banker = app.banker("banker").await;
    let from = app.open_account(&ann, "USD").await;
    let to = app.open_account(&bob, "USD").await;
    app.deposit(&banker, from, 1_000, "USD").await;
    let tables = ["users", "accounts", "transfers", "entries", "outbox"];
    let mut before = Vec::new();
    for table in tables {
        before.push(app.db.count(table).await);
    }

    let raw = |body: String| {
        app.client
            .post(app.url("/v1/transfers"))
            .bearer_auth(&ann.access)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    // The same answer on both listeners for what serde's derive or proto3 JSON would let through: an
    // array of the fields in order, a number as a string, null for a number.
    for (body, field, description) in [
        (
            format!(r#"[{from}, {to}, 5, "USD"]"#),
            "body",
            "invalid type: sequence, expected a map".to_owned(),
        ),
        (
            format!(
                r#"{{"from_account_id": {from}, "to_account_id": {to}, "amount": "5", "currency": "USD"}}"#
            ),
            "amount",
            r#"invalid type: string "5", expected i64"#.to_owned(),
        ),
        (
            format!(
                r#"{{"from_account_id": null, "to_account_id": {to}, "amount": 5, "currency": "USD"}}"#
            ),
            "from_account_id",
            "invalid type: null, expected i64".to_owned(),
        ),
    ] {
        let response = raw(body.clone()).await.expect("send");
        let error = expect_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "MALFORMED_REQUEST",
        )
        .await;
        let violation = &error["error"]["details"]["field_violations"][0];
        assert_eq!(violation["field"], field, "{body}");
        assert_eq!(violation["description"], description.as_str(), "{body}");
    }
    let broken = raw("{\"from_account_id\": 1,".to_owned())
        .await
        .expect("send");
    expect_error(
        broken,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;
    let wrong_type = raw(format!("{{\"from_account_id\": {from}, \"to_account_id\": {to}, \"amount\": \"ten\", \"currency\": \"USD\"}}")).await.expect("send");
    let body = expect_error(
        wrong_type,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["field_violations"][0]["field"],
        "amount"
    );
    let huge = raw(format!("{{\"from_account_id\": {from}, \"to_account_id\": {to}, \"amount\": 99999999999999999999, \"currency\": \"USD\"}}")).await.expect("send");
    let body = expect_error(
        huge,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["field_violations"][0]["field"],
        "amount"
    );
    let not_json = app
        .client
        .post(app.url("/v1/transfers"))
        .bearer_auth(&ann.access)
        .body("amount=5")
        .send()
        .await
        .expect("send");
    expect_error(
        not_json,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;

    for amount in [0, -5] {
        let response = app
            .post("/v1/transfers", &ann.access, json!({"from_account_id": from, "to_account_id": to, "amount": amount, "currency": "USD"}))
            .await;
        expect_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "INVALID_AMOUNT",
        )
        .await;
    }
    let every_field = app
        .post(
            "/v1/transfers",
            &ann.access,
            json!({"amount": -1, "currency": "XYZ"}),
        )
        .await;
    let body = expect_error(
        every_field,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "INVALID_AMOUNT",
    )
    .await;
    let fields: Vec<&str> = body["error"]["details"]["field_violations"]
        .as_array()
        .expect("violations")
        .iter()
        .map(|v| v["field"].as_str().expect("field"))
        .collect();
    assert_eq!(
        fields,
        ["from_account_id", "to_account_id", "amount", "currency"]
    );
    let currency = app
        .post(
            "/v1/transfers",
            &ann.access,
            json!({"from_account_id": from, "to_account_id": to, "amount": 5, "currency": "DOGE"}),
        )
        .await;
    expect_error(
        currency,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "VALIDATION_FAILED",
    )
    .await;
    let overdraft = app
        .post("/v1/transfers", &ann.access, json!({"from_account_id": from, "to_account_id": to, "amount": 5_000, "currency": "USD"}))
        .await;
    expect_error(
        overdraft,
        StatusCode::BAD_REQUEST,
        "failed_precondition",
        "INSUFFICIENT_FUNDS",
    )
    .await;

    for username in [
        "a".repeat(300),
        "ännä".to_owned(),
        "名前".to_owned(),
        "Robert'); DROP TABLE users;--".to_owned(),
    ] {
        let response = app
            .call(Method::POST, "/v1/users", None, Some(json!({"username": username, "full_name": "X", "email": "x@example.com", "password": "long enough"})))
            .await;
        let body = expect_error(
            response,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "VALIDATION_FAILED",
        )
        .await;
        assert_eq!(
            body["error"]["details"]["field_violations"][0]["field"],
            "username"
        );
    }

    let big = format!("{{\"currency\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let too_large = app
        .client
        .post(app.url("/v1/accounts"))
        .bearer_auth(&ann.access)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("send");
    expect_error(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_argument",
        "BODY_TOO_LARGE",
    )
    .await;

    expect_error(
        app.get("/v1/accounts/abc", &ann.access).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;
    // A segment whose percent-encoding is not UTF-8 (axum's own rejection answers in plain text).
    for path in ["/v1/accounts/%FF%FE", "/v1/transfers/%C3%28"] {
        let body = expect_error(
            app.get(path, &ann.access).await,
            StatusCode::BAD_REQUEST,
            "invalid_argument",
            "MALFORMED_REQUEST",
        )
        .await;
        assert_eq!(
            body["error"]["details"]["field_violations"][0]["field"], "id",
            "{path}"
        );
    }
    expect_error(
        app.get("/v1/accounts?page_size=0", &ann.access).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "VALIDATION_FAILED",
    )
    .await;
    expect_error(
        app.get("/v1/accounts?page_size=many", &ann.access).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;
    expect_error(
        app.get("/v1/accounts?page_token=zzz", &ann.access).await,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "VALIDATION_FAILED",
    )
    .await;
    // An empty segment names no resource, on both listeners.
    for path in ["/v1/nowhere", "/v1/accounts/", "/v1/accounts//entries"] {
        expect_error(
            app.get(path, &ann.access).await,
            StatusCode::NOT_FOUND,
            "not_found",
            "ROUTE_NOT_FOUND",
        )
        .await;
    }
    // A long bogus token is a bad token on both listeners (the gateway forwards it to gRPC, whose
    // header limit is above what the HTTP listeners accept); headers over that are a 431, alike.
    let long_token = "x".repeat(20 * 1024);
    expect_error(
        app.get("/v1/users/me", &long_token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_INVALID",
    )
    .await;
    let too_long = "x".repeat(40 * 1024);
    let body = expect_error(
        app.get("/v1/users/me", &too_long).await,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "invalid_argument",
        "HEADERS_TOO_LARGE",
    )
    .await;
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .contains("32768"),
        "{body}"
    );
    let many = app
        .client
        .get(app.url("/v1/users/me"))
        .headers(
            // Forty of 1,000 bytes: each is fine, together they are over (hyper itself refuses more
            // than 100 headers, before any of ours runs).
            (0..40)
                .map(|i| {
                    (
                        reqwest::header::HeaderName::try_from(format!("x-pad-{i}")).expect("name"),
                        reqwest::header::HeaderValue::try_from("x".repeat(1000)).expect("value"),
                    )
                })
                .collect(),
        )
        .send()
        .await
        .expect("send");
    expect_error(
        many,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "invalid_argument",
        "HEADERS_TOO_LARGE",
    )
    .await;

    for (table, before) in tables.into_iter().zip(before) {
        assert_eq!(app.db.count(table).await, before, "{table} changed");
    }
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
    malformed_input_is_a_4xx_in_the_contract_shape_and_writes_nothing,
    super::malformed_input_is_a_4xx_in_the_contract_shape_and_writes_nothing
);

over_both_transports!(
    idempotency_keys_replay_refuse_mismatches_and_allow_one_transfer,
    super::idempotency_keys_replay_refuse_mismatches_and_allow_one_transfer
);
