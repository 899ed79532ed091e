//! The HTTP/JSON gateway end to end: its committed OpenAPI document, its answers compared with REST's
//! for the same requests on the same process, and what it does when the gRPC server is slow or gone.
//!
//! The contract tests that run over both transports (`over_both_transports!` in `auth.rs`, `input.rs`,
//! `journey.rs`) cover the API's behaviour; these cover what is the gateway's own.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{PASSWORD, Session, TestApp, expect_error};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streambank_api::gateway::{self, GatewayOptions};

const COMMITTED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../docs/openapi/gateway.json"
);

#[test]
fn the_committed_gateway_document_is_current() {
    let generated = gateway::openapi::document_json(&streambank_proto::descriptor_pool())
        .expect("the document builds");
    if std::env::var("UPDATE_OPENAPI").is_ok() {
        std::fs::write(COMMITTED, &generated).expect("write docs/openapi/gateway.json");
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/openapi/gateway.json is out of date: run \
         `UPDATE_OPENAPI=1 cargo nextest run -p streambank-api the_committed_gateway_document_is_current` \
         and commit it"
    );
}

#[tokio::test]
async fn the_gateway_serves_its_document_and_swagger_ui() {
    let app = TestApp::spawn("paseto").await;
    let gw = |path: &str| format!("{}{path}", app.gateway_base);
    let served: Value = app
        .client
        .get(gw("/openapi.json"))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("json");
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(COMMITTED).unwrap_or_default())
            .unwrap_or_default();
    assert_eq!(
        served, committed,
        "the served document is the committed one"
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

    let ui = app.client.get(gw("/swagger/")).send().await.expect("GET");
    assert_eq!(ui.status(), StatusCode::OK);
    assert!(
        ui.text().await.expect("html").contains("swagger"),
        "Swagger UI"
    );
    let config = app
        .client
        .get(gw("/swagger/swagger-initializer.js"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("js");
    assert!(
        config.contains("/openapi.json"),
        "the UI reads /openapi.json"
    );
}

/// Sends the same request to REST and to the gateway; returns both (status, content-type, body).
async fn both(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> [(StatusCode, Option<String>, Value); 2] {
    let mut out = Vec::new();
    for base in [&app.rest_base, &app.gateway_base] {
        let mut request = app.client.request(method.clone(), format!("{base}{path}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let response = request
            .send()
            .await
            .expect("the request reaches the server");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        out.push((status, content_type, json));
    }
    let gateway = out.pop().expect("gateway");
    let rest = out.pop().expect("rest");
    [rest, gateway]
}

/// The parts of an error both transports must agree on: status, code, reason, and the bad fields.
fn error_essentials(answer: &(StatusCode, Option<String>, Value)) -> Value {
    let error = &answer.2["error"];
    let fields: Vec<Value> = error["details"]["field_violations"]
        .as_array()
        .map(|v| v.iter().map(|v| v["field"].clone()).collect())
        .unwrap_or_default();
    json!({
        "status": answer.0.as_u16(),
        "code": error["code"],
        "reason": error["reason"],
        "fields": fields,
    })
}

/// Ann's USD account, funded and opened through the gateway, and her transfer to Bob's.
struct Ledger {
    app: TestApp,
    ann: Session,
    from: i64,
    to: i64,
    transfer_id: i64,
}

/// Opens Ann's account, deposits into it and transfers from it, all through the gateway, checking that
/// each write answers with REST's status and shape.
async fn one_transfer_through_the_gateway() -> Ledger {
    let app = TestApp::spawn("paseto").await;
    let gw = |path: &str| format!("{}{path}", app.gateway_base);
    let ann = app.customer("ann").await;
    let bob = app.customer("bob").await;
    let banker = app.banker("banker").await;
    let opened = app
        .client
        .post(gw("/v1/accounts"))
        .bearer_auth(&ann.access)
        .json(&json!({"currency": "USD"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(opened.status(), StatusCode::CREATED);
    let from = opened.json::<Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    let to = app.open_account(&bob, "USD").await;
    let deposited = app
        .client
        .post(gw(&format!("/v1/accounts/{from}/deposits")))
        .bearer_auth(&banker.access)
        .json(&json!({"amount": 5_000, "currency": "USD"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(deposited.status(), StatusCode::CREATED);
    let transfer = app
        .client
        .post(gw("/v1/transfers"))
        .bearer_auth(&ann.access)
        .header("idempotency-key", "gw-1")
        .json(&json!({"from_account_id": from, "to_account_id": to, "amount": 1_250, "currency": "USD"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(transfer.status(), StatusCode::CREATED);
    let transfer: Value = transfer.json().await.expect("json");
    let transfer_id = transfer["transfer"]["id"].as_i64().expect("transfer id");
    assert_eq!(transfer["from_account"]["balance"], 3_750);
    Ledger {
        app,
        ann,
        from,
        to,
        transfer_id,
    }
}

/// A registration through the gateway answers as REST's does: 201, 64-bit integers as numbers,
/// defaults present, unknown fields ignored.
#[tokio::test]
async fn a_registration_through_the_gateway_answers_as_rest_does() {
    let app = TestApp::spawn("paseto").await;
    let registered = app
        .client
        .post(format!("{}/v1/users", app.gateway_base))
        .json(
            &json!({"username": "gwuser", "full_name": "Gate Way", "email": "gw@example.com",
                      "password": PASSWORD, "ignored": true}),
        )
        .send()
        .await
        .expect("POST");
    assert_eq!(registered.status(), StatusCode::CREATED);
    let user: Value = registered.json().await.expect("json");
    assert!(user["id"].is_i64(), "64-bit integers are numbers: {user}");
    assert_eq!(
        user["email_verified"], false,
        "defaults are present: {user}"
    );
    assert!(user["created_at"].is_string());
}

/// Opening, funding and transferring through the gateway answer with REST's statuses and shapes.
#[tokio::test]
async fn writes_through_the_gateway_answer_as_rest_does() {
    one_transfer_through_the_gateway().await;
}

/// Reads answer the same JSON, value for value (nulls included), from both listeners.
#[tokio::test]
async fn reads_are_the_same_json_on_both() {
    let Ledger {
        app,
        ann,
        from,
        transfer_id,
        ..
    } = one_transfer_through_the_gateway().await;
    for path in [
        "/v1/users/me".to_owned(),
        "/v1/accounts".to_owned(),
        "/v1/accounts?page_size=1".to_owned(),
        format!("/v1/accounts/{from}"),
        format!("/v1/accounts/{from}/entries"),
        format!("/v1/transfers/{transfer_id}"),
        format!("/v1/transfers?account_id={from}"),
        "/v1/notifications".to_owned(),
    ] {
        let [rest, gateway] = both(&app, Method::GET, &path, Some(&ann.access), None).await;
        assert_eq!(rest.0, StatusCode::OK, "GET {path}: {rest:?}");
        assert_eq!(rest, gateway, "GET {path}");
    }
    let [rest, gateway] = both(
        &app,
        Method::GET,
        &format!("/v1/accounts/{from}/entries"),
        Some(&ann.access),
        None,
    )
    .await;
    assert_eq!(
        gateway.2["next_page_token"],
        Value::Null,
        "unset optional fields are null, as REST's are: {rest:?}"
    );
}

/// Failures answer the same body on both, word for word, except two known wordings: the gRPC server's
/// message for a missing token names metadata rather than a header, and prost-reflect words an integer
/// overflow differently from serde. For those, the same status, code, reason and bad fields. Every
/// gateway failure is `application/json`.
#[tokio::test]
async fn failures_are_the_same_error_on_both() {
    let Ledger {
        app, ann, from, to, ..
    } = one_transfer_through_the_gateway().await;
    let token = Some(ann.access.as_str());
    let huge = format!(
        "{{\"from_account_id\": {from}, \"to_account_id\": {to}, \"amount\": 99999999999999999999, \"currency\": \"USD\"}}"
    );
    // (method, path, token, body)
    let cases: Vec<(Method, String, Option<&str>, Option<&str>)> = vec![
        (Method::GET, "/v1/nothing".into(), None, None),
        (Method::GET, "/v1/accounts/".into(), token, None),
        (Method::PUT, "/v1/accounts".into(), token, None),
        (Method::GET, "/v1/accounts/abc".into(), token, None),
        (Method::GET, "/v1/accounts/0".into(), token, None),
        (Method::GET, "/v1/accounts/999999".into(), token, None),
        (Method::GET, format!("/v1/accounts/{to}"), token, None),
        (
            Method::GET,
            "/v1/accounts?page_size=ten".into(),
            token,
            None,
        ),
        (Method::GET, "/v1/accounts?page_size=0".into(), token, None),
        (
            Method::GET,
            "/v1/accounts?page_token=garbage".into(),
            token,
            None,
        ),
        (Method::GET, "/v1/users/me".into(), None, None),
        (
            Method::GET,
            "/v1/users/me".into(),
            Some("not-a-token"),
            None,
        ),
        (Method::POST, "/v1/accounts".into(), token, Some("")),
        (
            Method::POST,
            "/v1/accounts".into(),
            token,
            Some("{\"currency\": 7}"),
        ),
        (
            Method::POST,
            "/v1/accounts".into(),
            token,
            Some("{\"currency\": \"USD\"}"),
        ),
        (Method::POST, "/v1/transfers".into(), token, Some(&huge)),
        (
            Method::POST,
            "/v1/transfers".into(),
            token,
            Some("{\"amount\": -1, \"currency\": \"XYZ\"}"),
        ),
        (
            Method::POST,
            "/v1/users".into(),
            None,
            Some("{\"username\": \"A\"}"),
        ),
        (
            Method::POST,
            format!("/v1/accounts/{from}/deposits"),
            token,
            Some("{\"amount\": 5, \"currency\": \"USD\"}"),
        ),
    ];
    for (method, path, token, body) in cases {
        let [rest, gateway] = both(&app, method.clone(), &path, token, body).await;
        assert!(
            rest.0.is_client_error(),
            "{method} {path} fails on REST: {rest:?}"
        );
        let worded_differently =
            (path == "/v1/users/me" && token.is_none()) || body == Some(huge.as_str());
        if worded_differently {
            assert_eq!(
                error_essentials(&rest),
                error_essentials(&gateway),
                "{method} {path} {body:?}: REST {rest:?}, gateway {gateway:?}"
            );
        } else {
            assert_eq!(rest, gateway, "{method} {path} {body:?}");
        }
        assert_eq!(
            gateway.1.as_deref(),
            Some("application/json"),
            "{method} {path}"
        );
    }
}

/// A body that is not declared JSON is refused through the gateway as REST refuses it.
#[tokio::test]
async fn a_body_not_declared_json_is_refused_as_rest_refuses_it() {
    let app = TestApp::spawn("paseto").await;
    let ann = app.customer("ann").await;
    let form = app
        .client
        .post(format!("{}/v1/accounts", app.gateway_base))
        .bearer_auth(&ann.access)
        .body("currency=USD")
        .send()
        .await
        .expect("POST");
    let body = expect_error(
        form,
        StatusCode::BAD_REQUEST,
        "invalid_argument",
        "MALFORMED_REQUEST",
    )
    .await;
    assert_eq!(
        body["error"]["details"]["field_violations"][0]["field"],
        "body"
    );
}

/// The gateway echoes a request id when sent one and makes one up when not, on successes and failures
/// alike.
#[tokio::test]
async fn the_gateway_echoes_or_generates_request_ids() {
    let app = TestApp::spawn("paseto").await;
    let ann = app.customer("ann").await;
    for path in ["/v1/users/me", "/v1/nothing"] {
        let url = format!("{}{path}", app.gateway_base);
        let echoed = app
            .client
            .get(&url)
            .bearer_auth(&ann.access)
            .header("x-request-id", "req-gw-1")
            .send()
            .await
            .expect("GET");
        assert_eq!(echoed.headers()["x-request-id"], "req-gw-1", "{path}");
        let generated = app
            .client
            .get(&url)
            .bearer_auth(&ann.access)
            .send()
            .await
            .expect("GET");
        assert!(!generated.headers()["x-request-id"].is_empty(), "{path}");
    }
}

/// Logout through the gateway is 204 with no body, like REST's; the token stops working at once.
#[tokio::test]
async fn a_logout_through_the_gateway_is_204_and_ends_the_token() {
    let app = TestApp::spawn("paseto").await;
    let ann = app.customer("ann").await;
    let logout = app
        .client
        .delete(format!("{}/v1/sessions/current", app.gateway_base))
        .bearer_auth(&ann.access)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(logout.headers().get("content-type").is_none());
    assert!(logout.bytes().await.expect("body").is_empty());
    let after = app.get("/v1/users/me", &ann.access).await;
    expect_error(
        after,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_on_both() {
    let app = TestApp::spawn_with(&[("BODY_LIMIT_BYTES", "128")]).await;
    let big = json!({"username": "x".repeat(200), "password": PASSWORD}).to_string();
    let [rest, gateway] = both(&app, Method::POST, "/v1/sessions", None, Some(&big)).await;
    assert_eq!(rest.0, StatusCode::PAYLOAD_TOO_LARGE, "{rest:?}");
    assert_eq!(rest.2, gateway.2);
    assert_eq!(gateway.2["error"]["reason"], "BODY_TOO_LARGE");
}

#[tokio::test]
async fn rate_limits_through_the_gateway_carry_retry_after() {
    let app = TestApp::spawn_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "1")]).await;
    let login = || {
        app.client
            .post(format!("{}/v1/sessions", app.gateway_base))
            .json(&json!({"username": "nobody", "password": PASSWORD}))
            .send()
    };
    let first = login().await.expect("POST");
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let second = login().await.expect("POST");
    let retry_after: u64 = second
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!(retry_after >= 1);
    expect_error(
        second,
        StatusCode::TOO_MANY_REQUESTS,
        "resource_exhausted",
        "RATE_LIMITED",
    )
    .await;
}

/// The gateway calls the gRPC server with each client's address appended to `x-forwarded-for`, and the
/// server believes it on the gateway's own connections only: each gateway client has its own login limit,
/// as on REST, instead of all sharing the gateway's address. Clients at 127.0.0.1 and 127.0.0.2 (both
/// loopback), no `TRUSTED_PROXIES`; a client that forges `X-Forwarded-For` is still known by its
/// socket address. Both ways the gateway finds its own process's server: `GATEWAY_UPSTREAM` unset, and
/// set to the process's own listener by name, as compose and the manifests set it.
#[tokio::test]
async fn gateway_clients_are_rate_limited_each_by_their_own_address() {
    let free_port = streambank_testkit::process::free_port();
    let grpc_addr = format!("127.0.0.1:{free_port}");
    let upstream = format!("http://localhost:{free_port}");
    let configs: [&[(&str, &str)]; 2] = [
        &[("AUTH_RATE_LIMIT_PER_MINUTE", "1")],
        &[
            ("AUTH_RATE_LIMIT_PER_MINUTE", "1"),
            ("GRPC_ADDR", &grpc_addr),
            ("GATEWAY_UPSTREAM", &upstream),
        ],
    ];
    for vars in configs {
        let app = TestApp::spawn_with(vars).await;
        let from = |ip: [u8; 4]| {
            reqwest::Client::builder()
                .local_address(std::net::IpAddr::from(ip))
                .build()
                .expect("client")
        };
        let (ann, bob) = (from([127, 0, 0, 1]), from([127, 0, 0, 2]));
        let login = |client: &reqwest::Client, forged: Option<&str>| {
            let mut request = client
                .post(format!("{}/v1/sessions", app.gateway_base))
                .json(&json!({"username": "nobody", "password": PASSWORD}));
            if let Some(forged) = forged {
                request = request.header("x-forwarded-for", forged);
            }
            request.send()
        };
        let status = |r: reqwest::Response| r.status();

        assert_eq!(
            status(login(&ann, None).await.expect("POST")),
            StatusCode::UNAUTHORIZED,
            "{vars:?}"
        );
        assert_eq!(
            status(login(&ann, Some("198.51.100.9")).await.expect("POST")),
            StatusCode::TOO_MANY_REQUESTS,
            "a forged X-Forwarded-For does not make a new client ({vars:?})"
        );
        assert_eq!(
            status(login(&bob, None).await.expect("POST")),
            StatusCode::UNAUTHORIZED,
            "another client has a limit of its own ({vars:?})"
        );
        assert_eq!(
            status(login(&bob, None).await.expect("POST")),
            StatusCode::TOO_MANY_REQUESTS,
            "{vars:?}"
        );
    }
}

/// A session records the client's address and user agent, and the same ones whether the client logged
/// in over REST or through the gateway (whose own gRPC client would otherwise show as the caller).
#[tokio::test]
async fn a_session_records_the_clients_address_and_user_agent_on_both_listeners() {
    let app = TestApp::spawn("paseto").await;
    let id = app.register("ann").await;
    app.bank.mark_email_verified(id).await.expect("verify");
    let login = |base: &str, ip: [u8; 4], user_agent: Option<&'static str>| {
        let mut client = reqwest::Client::builder().local_address(std::net::IpAddr::from(ip));
        if let Some(user_agent) = user_agent {
            client = client.user_agent(user_agent);
        }
        let url = format!("{base}/v1/sessions");
        async move {
            let response = client
                .build()
                .expect("client")
                .post(url)
                .json(&json!({"username": "ann", "password": PASSWORD}))
                .send()
                .await
                .expect("POST");
            assert_eq!(response.status(), StatusCode::CREATED);
            let body: Value = response.json().await.expect("json");
            body["session_id"].as_str().expect("session id").to_owned()
        }
    };
    let recorded = |session: String| {
        let pool = app.db.pool.clone();
        async move {
            sqlx::query_as::<_, (Option<String>, Option<String>)>(
                "SELECT host(client_ip), user_agent FROM sessions WHERE id = $1::uuid",
            )
            .bind(session)
            .fetch_one(&pool)
            .await
            .expect("the session row")
        }
    };
    let cases = [
        (&app.rest_base, [127, 0, 0, 2], Some("bank-app/2.1 (ios)")),
        (
            &app.gateway_base,
            [127, 0, 0, 3],
            Some("bank-app/2.1 (ios)"),
        ),
        (&app.rest_base, [127, 0, 0, 4], None),
        (&app.gateway_base, [127, 0, 0, 5], None),
    ];
    for (base, ip, user_agent) in cases {
        let session = login(base, ip, user_agent).await;
        let expected_ip = std::net::IpAddr::from(ip).to_string();
        assert_eq!(
            recorded(session).await,
            (Some(expected_ip), user_agent.map(str::to_owned)),
            "{base}"
        );
    }
}

/// Serves a gateway alone, calling `upstream` over the channel the API process builds.
async fn lone_gateway(upstream: SocketAddr, timeout: Duration) -> String {
    let channel = streambank_api::grpc::peer::GatewayConnections::default()
        .channel(&format!("http://{upstream}"))
        .expect("channel");
    let router = gateway::router(
        &streambank_proto::descriptor_pool(),
        channel,
        GatewayOptions {
            body_limit_bytes: 65_536,
            request_timeout: timeout,
            cors_allowed_origins: vec![],
        },
    )
    .expect("router");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_unreachable_upstream_is_503_upstream_unavailable() {
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let base = lone_gateway(closed, Duration::from_secs(10)).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/users/me"))
        .header("x-request-id", "req-down")
        .send()
        .await
        .expect("GET");
    assert_eq!(response.headers()["x-request-id"], "req-down");
    let body = expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "UPSTREAM_UNAVAILABLE",
    )
    .await;
    assert!(
        !body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("127.0.0.1"),
        "{body}"
    );
}

#[tokio::test]
async fn a_silent_upstream_times_out_as_503_timeout() {
    // Accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = silent.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let base = lone_gateway(addr, Duration::from_millis(300)).await;
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/accounts"))
        .send()
        .await
        .expect("GET");
    assert!(!response.headers()["x-request-id"].is_empty());
    expect_error(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "TIMEOUT",
    )
    .await;
}
