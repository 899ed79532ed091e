//! Findings of the security review (issue 22), each held by a test over real sockets.

use std::time::{Duration, Instant};

use crate::common::{PASSWORD, Session, TEST_KEY, TestApp, expect_error};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

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

/// Reads one HTTP/1.1 response (head and a `Content-Length` body) from `stream`, within `within`.
async fn read_response(stream: &mut TcpStream, within: Duration) -> String {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
            .await
            .unwrap_or_else(|_| panic!("no whole response within {within:?}; so far: {text:?}"))
            .expect("read");
        assert!(n > 0, "closed before a whole response: {text:?}");
        got.extend_from_slice(&chunk[..n]);
    }
}

/// How long until the server closes `stream` (end of file or reset), waiting at most `within`.
async fn closed_after(stream: &mut TcpStream, within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut chunk = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut chunk),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {}
        }
    }
}

const LIMITS: [(&str, &str); 3] = [
    ("HEADER_READ_TIMEOUT", "1s"),
    ("IDLE_TIMEOUT", "2s"),
    ("MAX_CONNECTIONS", "4"),
];

/// A connection that sends half a request head, or nothing, is closed once the header-read timeout
/// has passed, on every listener, HTTP/1.1 or HTTP/2 (more HTTP/2 cases: `connections.rs`).
#[tokio::test]
async fn connections_that_never_finish_a_request_are_closed() {
    let app = TestApp::spawn_with(&LIMITS).await;
    let rest = app.rest_base.trim_start_matches("http://").to_owned();
    let gateway = app.gateway_base.trim_start_matches("http://").to_owned();
    let grpc = app.grpc_addr.to_string();
    let half_head: &'static [u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n";
    let header_read = Duration::from_secs(1);
    let cases: Vec<(&str, String, &'static [u8], Duration)> = vec![
        ("REST, half a head", rest.clone(), half_head, header_read),
        (
            "gateway, half a head",
            gateway.clone(),
            half_head,
            header_read,
        ),
        (
            "gRPC, half the preface",
            grpc.clone(),
            b"PRI * HTTP/2.0\r\n",
            header_read,
        ),
        (
            "gRPC, the preface and settings",
            grpc.clone(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
            header_read,
        ),
        ("REST, nothing", rest, b"", header_read),
        ("gateway, nothing", gateway, b"", header_read),
        ("gRPC, nothing", grpc, b"", header_read),
    ];
    let mut waits = Vec::new();
    for (name, addr, sent, timeout) in cases {
        waits.push(async move {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(sent).await.expect("write");
            let closed = closed_after(&mut stream, Duration::from_secs(10)).await;
            (name, timeout, closed)
        });
    }
    for (name, timeout, closed) in futures_join_all(waits).await {
        let closed = closed.unwrap_or_else(|| panic!("{name}: still open after 10 s"));
        assert!(
            closed >= timeout.mul_f32(0.9) && closed < timeout + Duration::from_secs(3),
            "{name}: closed after {closed:?}, the timeout being {timeout:?}"
        );
    }
}

/// Runs the futures at once and returns their outputs in order.
async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futures: Vec<F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for task in tasks {
        outputs.push(task.await.expect("task"));
    }
    outputs
}

/// Beyond `MAX_CONNECTIONS` a listener closes new connections at once, while the ones it holds go on
/// being served; a closed one frees its place.
#[tokio::test]
async fn each_listener_holds_at_most_max_connections() {
    let app = TestApp::spawn_with(&LIMITS).await;
    for base in [&app.rest_base, &app.gateway_base] {
        let addr = base.trim_start_matches("http://");
        let mut held = Vec::new();
        for _ in 0..4 {
            held.push(TcpStream::connect(addr).await.expect("connect"));
        }
        // A fifth is accepted by the kernel and closed by the server without a word.
        let mut refused = TcpStream::connect(addr).await.expect("connect");
        let _ = refused
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        let closed = closed_after(&mut refused, Duration::from_millis(900)).await;
        assert!(closed.is_some(), "{base}: a fifth connection was served");
        // The four it holds are served (a 404 in the contract's shape, from either listener).
        for stream in &mut held {
            stream
                .write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
                .await
                .expect("write");
            let response = read_response(stream, Duration::from_secs(5)).await;
            assert!(response.starts_with("HTTP/1.1 404"), "{base}: {response}");
        }
        // One closes; a new one takes its place.
        drop(held.pop());
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut again = TcpStream::connect(addr).await.expect("connect");
        again
            .write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let response = read_response(&mut again, Duration::from_secs(5)).await;
        assert!(response.starts_with("HTTP/1.1 404"), "{base}: {response}");
    }

    // gRPC: four held (a health check over each), a fifth closed.
    let mut channels = Vec::new();
    for _ in 0..4 {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", app.grpc_addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        // A first request at once: an HTTP/2 connection must send one within the header-read
        // timeout, after which only the idle timeout applies.
        tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("a first request");
        channels.push(channel);
    }
    let mut refused = TcpStream::connect(app.grpc_addr).await.expect("connect");
    let _ = refused.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(
        closed_after(&mut refused, Duration::from_millis(900))
            .await
            .is_some(),
        "a fifth gRPC connection was served"
    );
    for channel in channels {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let answer = health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .expect("a held connection is served");
        assert_eq!(answer.into_inner().status, 1, "SERVING");
    }
}

/// A declared `Content-Length` over the body limit is answered 413 at once, in the contract's shape,
/// without waiting for the body (it used to wait for the request timeout and answer 503).
#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_at_once() {
    let app = TestApp::spawn("paseto").await;
    for base in [&app.rest_base, &app.gateway_base] {
        let mut stream = TcpStream::connect(base.trim_start_matches("http://"))
            .await
            .expect("connect");
        stream
            .write_all(
                b"POST /v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                  Content-Length: 10000000\r\n\r\n{\"username\":",
            )
            .await
            .expect("write");
        let response = read_response(&mut stream, Duration::from_secs(2)).await;
        assert!(response.starts_with("HTTP/1.1 413"), "{base}: {response}");
        let body = &response[response.find("\r\n\r\n").expect("head") + 4..];
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert_eq!(body["error"]["code"], "invalid_argument", "{body}");
        assert_eq!(body["error"]["reason"], "BODY_TOO_LARGE", "{body}");
    }
}

/// Two customers with USD accounts (Ann's funded with 1,000), and Bob's EUR account.
struct Parties {
    ann: Session,
    bob: Session,
    ann_usd: i64,
    bob_usd: i64,
    bob_eur: i64,
}

async fn parties(app: &TestApp) -> Parties {
    let banker = app.banker("banker").await;
    let ann = app.customer("ann").await;
    let bob = app.customer("bob").await;
    let ann_usd = app.open_account(&ann, "USD").await;
    let bob_usd = app.open_account(&bob, "USD").await;
    let bob_eur = app.open_account(&bob, "EUR").await;
    app.deposit(&banker, ann_usd, 1_000, "USD").await;
    app.deposit(&banker, bob_usd, 777_777, "USD").await;
    Parties {
        ann,
        bob,
        ann_usd,
        bob_usd,
        bob_eur,
    }
}

/// A transfer's answer, on REST, the gateway and gRPC, shows the transfer and the caller's own account
/// and entry; nothing of the destination's owner or balance.
#[tokio::test]
async fn a_transfer_answer_shows_only_the_callers_data() {
    let app = TestApp::spawn("paseto").await;
    let p = parties(&app).await;
    for base in [&app.rest_base, &app.gateway_base] {
        let response = app
            .client
            .post(format!("{base}/v1/transfers"))
            .bearer_auth(&p.ann.access)
            .json(&serde_json::json!({"from_account_id": p.ann_usd, "to_account_id": p.bob_usd, "amount": 10, "currency": "USD"}))
            .send()
            .await
            .expect("transfer");
        assert_eq!(response.status(), StatusCode::CREATED, "{base}");
        let body: serde_json::Value = response.json().await.expect("json");
        let keys: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["from_account", "from_entry", "transfer"],
            "{base}: {body}"
        );
        assert_eq!(body["from_account"]["owner_id"], p.ann.user_id, "{body}");
        assert_eq!(body["transfer"]["to_account_id"], p.bob_usd, "{body}");
        let text = body.to_string();
        assert!(
            !text.contains("777") && !text.contains(&format!("\"owner_id\":{}", p.bob.user_id)),
            "{base}: Bob's balance or id in {text}"
        );
    }

    let mut transfers = streambank_proto::v1::transfer_service_client::TransferServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    let mut request = tonic::Request::new(streambank_proto::v1::CreateTransferRequest {
        from_account_id: p.ann_usd,
        to_account_id: p.bob_usd,
        amount: 10,
        currency: "USD".into(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", p.ann.access).parse().expect("ascii"),
    );
    let answer = transfers
        .create_transfer(request)
        .await
        .expect("gRPC transfer")
        .into_inner();
    assert_eq!(answer.from_account.as_ref().expect("from").balance, 970);
    // Fields 3 and 5 (the destination's account and entry) are reserved: nothing else is sent.
    let bytes = prost::Message::encode_to_vec(&answer);
    let decoded = prost_reflect::DynamicMessage::decode(
        streambank_proto::descriptor_pool()
            .get_message_by_name("streambank.v1.TransferResult")
            .expect("descriptor"),
        bytes.as_slice(),
    )
    .expect("decode");
    assert_eq!(decoded.fields().count(), 3, "{decoded:?}");
}

/// A refusal about the destination is one answer (`CANNOT_RECEIVE`) whether it does not exist or is
/// in another currency; and the source is checked first, so an unfunded transfer is refused for its
/// funds whatever the destination. On REST, the gateway and gRPC alike.
#[tokio::test]
async fn refusals_reveal_nothing_about_the_destination() {
    let app = TestApp::spawn("paseto").await;
    let p = parties(&app).await;
    let cases = [
        ("unknown destination", 987_654_321, 10, "CANNOT_RECEIVE"),
        ("destination in EUR", p.bob_eur, 10, "CANNOT_RECEIVE"),
        (
            "unfunded, unknown destination",
            987_654_321,
            5_000,
            "INSUFFICIENT_FUNDS",
        ),
        (
            "unfunded, destination in EUR",
            p.bob_eur,
            5_000,
            "INSUFFICIENT_FUNDS",
        ),
        (
            "unfunded, existing destination",
            p.bob_usd,
            5_000,
            "INSUFFICIENT_FUNDS",
        ),
    ];
    for base in [&app.rest_base, &app.gateway_base] {
        let mut answers = std::collections::HashMap::new();
        for (name, to, amount, reason) in cases {
            let response = app
                .client
                .post(format!("{base}/v1/transfers"))
                .bearer_auth(&p.ann.access)
                .json(&serde_json::json!({"from_account_id": p.ann_usd, "to_account_id": to, "amount": amount, "currency": "USD"}))
                .send()
                .await
                .expect("transfer");
            let body = expect_error(
                response,
                StatusCode::BAD_REQUEST,
                "failed_precondition",
                reason,
            )
            .await;
            let text = body.to_string();
            assert!(
                !text.contains("EUR") && !text.contains(&to.to_string()),
                "{base} {name}: {text}"
            );
            // Every refusal with the same reason is the same body, byte for byte.
            if let Some(first) = answers.insert(reason, text.clone()) {
                assert_eq!(first, text, "{base} {name}");
            }
        }
    }

    let mut transfers = streambank_proto::v1::transfer_service_client::TransferServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    let mut messages = std::collections::HashMap::new();
    for (name, to, amount, reason) in cases {
        let mut request = tonic::Request::new(streambank_proto::v1::CreateTransferRequest {
            from_account_id: p.ann_usd,
            to_account_id: to,
            amount,
            currency: "USD".into(),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", p.ann.access).parse().expect("ascii"),
        );
        let status = transfers.create_transfer(request).await.expect_err(name);
        assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{name}");
        let info = tonic_types::StatusExt::get_details_error_info(&status).expect("ErrorInfo");
        assert_eq!(info.reason, reason, "{name}");
        assert!(!status.message().contains("EUR"), "{name}: {status:?}");
        if let Some(first) = messages.insert(reason, status.message().to_owned()) {
            assert_eq!(first, status.message(), "{name}");
        }
    }
}

/// How a deposit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Made,
    Refused,
}

/// One deposit of 1 USD into `account`, over `transport` ("rest", "gateway" or "grpc").
async fn deposit_once(
    app: &TestApp,
    grpc: &mut streambank_proto::v1::account_service_client::AccountServiceClient<
        tonic::transport::Channel,
    >,
    transport: &str,
    token: &str,
    account: i64,
) -> Outcome {
    if transport == "grpc" {
        let mut request = tonic::Request::new(streambank_proto::v1::DepositRequest {
            id: account,
            amount: 1,
            currency: "USD".into(),
        });
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        return match grpc.deposit(request).await {
            Ok(_) => Outcome::Made,
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
                ) =>
            {
                Outcome::Refused
            }
            Err(status) => panic!("gRPC deposit: {status:?}"),
        };
    }
    let base = if transport == "rest" {
        &app.rest_base
    } else {
        &app.gateway_base
    };
    let response = app
        .client
        .post(format!("{base}/v1/accounts/{account}/deposits"))
        .bearer_auth(token)
        .json(&serde_json::json!({"amount": 1, "currency": "USD"}))
        .send()
        .await
        .expect("deposit");
    match response.status() {
        StatusCode::CREATED => Outcome::Made,
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => Outcome::Refused,
        other => panic!("{transport} deposit: {other} {:?}", response.text().await),
    }
}

/// A banker demoted (as `bankctl users grant-role --role customer` does) while deposits stream in on
/// REST, the gateway and gRPC with the banker's token: once the demotion has committed, no deposit
/// commits, on any listener (the role is read again, under a lock, by the statement that writes;
/// the session cache is invalidated only asynchronously).
#[tokio::test]
async fn no_deposit_commits_after_the_bankers_demotion() {
    let app = std::sync::Arc::new(TestApp::spawn("paseto").await);
    let banker = app.banker("demoted").await;
    let ann = app.customer("ann").await;
    let account = app.open_account(&ann, "USD").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");

    // How many loops have made a deposit: the demotion waits for all of them (on a loaded machine a
    // fixed pause could end before a listener's first deposit).
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for transport in ["rest", "gateway", "grpc"] {
        for _ in 0..4 {
            let (app, stop, token) = (app.clone(), stop.clone(), banker.access.clone());
            let mut grpc = streambank_proto::v1::account_service_client::AccountServiceClient::new(
                channel.clone(),
            );
            let started = started.clone();
            tasks.push(tokio::spawn(async move {
                let mut outcomes = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let outcome = deposit_once(&app, &mut grpc, transport, &token, account).await;
                    if outcome == Outcome::Made && !outcomes.contains(&Outcome::Made) {
                        started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    outcomes.push(outcome);
                }
                (transport, outcomes)
            }));
        }
    }
    let entries = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM entries WHERE account_id = $1")
            .bind(account)
            .fetch_one(&app.db.pool)
            .await
            .expect("count")
    };
    let waiting = std::time::Instant::now();
    while started.load(std::sync::atomic::Ordering::Relaxed) < tasks.len() {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "every loop makes a deposit before the demotion"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app.bank
        .grant_role("demoted", streambank_service::Role::Customer)
        .await
        .expect("demote");
    let at_demotion = entries().await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);

    let mut made = 0;
    for task in tasks {
        let (transport, outcomes) = task.await.expect("task");
        assert!(
            outcomes.contains(&Outcome::Made),
            "{transport}: no deposit before the demotion"
        );
        assert!(
            outcomes.contains(&Outcome::Refused),
            "{transport}: no deposit after the demotion"
        );
        // Made until the demotion, refused after: never made again once refused.
        let first_refusal = outcomes
            .iter()
            .position(|o| *o == Outcome::Refused)
            .expect("a refusal");
        assert!(
            !outcomes[first_refusal..].contains(&Outcome::Made),
            "{transport}: {outcomes:?}"
        );
        made += outcomes.iter().filter(|o| **o == Outcome::Made).count();
    }
    let at_end = entries().await;
    assert_eq!(
        at_end, at_demotion,
        "deposits committed after the demotion had"
    );
    assert_eq!(
        i64::try_from(made).expect("count"),
        at_end,
        "every deposit answered 201 is in the ledger, and only those"
    );
}

/// One client address has one budget of logins and registrations across REST, gRPC and the gateway
/// (it used to be one per transport: 30 + 30 guesses a minute).
#[tokio::test]
async fn one_login_budget_per_address_across_transports() {
    let app = TestApp::spawn_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "4")]).await;
    let wrong = serde_json::json!({"username": "nobody", "password": "wrong password!"});
    let mut users = streambank_proto::v1::user_service_client::UserServiceClient::new(
        tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect"),
    );
    let grpc_login = || streambank_proto::v1::LoginRequest {
        username: "nobody".into(),
        password: "wrong password!".into(),
        ..Default::default()
    };
    // Two guesses over REST and two over gRPC spend the budget of four...
    for _ in 0..2 {
        let response = app
            .client
            .post(format!("{}/v1/sessions", app.rest_base))
            .json(&wrong)
            .send()
            .await
            .expect("login");
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let status = users.login(grpc_login()).await.expect_err("wrong password");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
    // ...so the fifth is refused on every transport.
    for base in [&app.rest_base, &app.gateway_base] {
        let response = app
            .client
            .post(format!("{base}/v1/sessions"))
            .json(&wrong)
            .send()
            .await
            .expect("login");
        assert!(response.headers().contains_key("retry-after"), "{base}");
        expect_error(
            response,
            StatusCode::TOO_MANY_REQUESTS,
            "resource_exhausted",
            "RATE_LIMITED",
        )
        .await;
    }
    let status = users.login(grpc_login()).await.expect_err("limited");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
}

/// Every answer on REST and the gateway, tokens above all, is `Cache-Control: no-store` and
/// `nosniff` (with `X-Frame-Options`, a `frame-ancestors` policy and `Referrer-Policy`); a `405`
/// names the methods the path has in `Allow`.
#[tokio::test]
async fn answers_carry_the_headers_a_json_api_should() {
    let app = TestApp::spawn("paseto").await;
    let ann = app.customer("ann").await;
    for base in [&app.rest_base, &app.gateway_base] {
        let login = app
            .client
            .post(format!("{base}/v1/sessions"))
            .json(&serde_json::json!({"username": "ann", "password": PASSWORD}))
            .send()
            .await
            .expect("login");
        let login_headers = login.headers().clone();
        let login_status = login.status();
        let tokens: serde_json::Value = login.json().await.expect("tokens");
        let refresh = app
            .client
            .post(format!("{base}/v1/sessions/refresh"))
            .json(&serde_json::json!({"refresh_token": tokens["refresh_token"]}))
            .send()
            .await
            .expect("refresh");
        let missing = app
            .client
            .get(format!("{base}/v1/nothing"))
            .send()
            .await
            .expect("404");
        for (name, headers, got, status) in [
            ("login", &login_headers, login_status, StatusCode::CREATED),
            (
                "refresh",
                refresh.headers(),
                refresh.status(),
                StatusCode::OK,
            ),
            (
                "unknown route",
                missing.headers(),
                missing.status(),
                StatusCode::NOT_FOUND,
            ),
        ] {
            assert_eq!(got, status, "{base} {name}");
            for (header, value) in [
                ("cache-control", "no-store"),
                ("x-content-type-options", "nosniff"),
                ("x-frame-options", "DENY"),
                ("content-security-policy", "frame-ancestors 'none'"),
                ("referrer-policy", "no-referrer"),
            ] {
                assert_eq!(
                    headers.get(header).and_then(|v| v.to_str().ok()),
                    Some(value),
                    "{base} {name}: {header}"
                );
            }
        }

        let not_allowed = app
            .client
            .put(format!("{base}/v1/accounts"))
            .bearer_auth(&ann.access)
            .send()
            .await
            .expect("405");
        assert_eq!(
            not_allowed.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{base}"
        );
        let allow = not_allowed
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{base}: a 405 without Allow"))
            .to_owned();
        let mut methods: Vec<&str> = allow.split(',').map(str::trim).collect();
        methods.sort_unstable();
        assert!(
            methods.contains(&"GET") && methods.contains(&"POST") && !methods.contains(&"PUT"),
            "{base}: Allow: {allow}"
        );
    }
}

/// What a test's log subscriber wrote, as one string.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// Installs a subscriber for the whole process with the processes' own filter built from
    /// `directives` (as `RUST_LOG`), writing here. (nextest runs each test in a process of its own.)
    fn install(directives: &str) -> Self {
        let captured = Self::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(captured.clone())
            .with_env_filter(streambank_telemetry::filter(directives))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("the only subscriber of this process: run the tests with cargo nextest");
        captured
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

/// A secret a test used, and what it is (for the failure message).
type Secret = (&'static str, String);

/// Registers `sam` with `password` over REST and tries a made-up verification `code` on both HTTP
/// listeners (refused); returns Sam's id.
async fn register_and_try_a_made_up_code(app: &TestApp, password: &str, code: &str) -> i64 {
    let register = app
        .client
        .post(format!("{}/v1/users", app.rest_base))
        .json(&serde_json::json!({"username": "sam", "full_name": "Sam Secret", "email": "sam@example.com", "password": password}))
        .send()
        .await
        .expect("register");
    assert_eq!(register.status(), StatusCode::CREATED);
    let user_id = register.json::<serde_json::Value>().await.expect("json")["id"]
        .as_i64()
        .expect("id");
    for base in [&app.rest_base, &app.gateway_base] {
        let verify = app
            .client
            .get(format!(
                "{base}/v1/users/verify-email?id={user_id}&code={code}"
            ))
            .send()
            .await
            .expect("verify");
        assert!(verify.status().is_client_error(), "{base}: a made-up code");
    }
    user_id
}

/// A whole session of Sam's on `base`: log in, use the token on both listeners in the header
/// (accepted) and in `?access_token=` (refused), refresh, log out. Returns its tokens.
async fn a_session_over_http(app: &TestApp, base: &str, password: &str) -> Vec<Secret> {
    let login: serde_json::Value = app
        .client
        .post(format!("{base}/v1/sessions"))
        .json(&serde_json::json!({"username": "sam", "password": password}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("tokens");
    let access = login["access_token"].as_str().expect("access").to_owned();
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    for other in [&app.rest_base, &app.gateway_base] {
        let me = app
            .client
            .get(format!("{other}/v1/users/me"))
            .bearer_auth(&access)
            .send()
            .await
            .expect("me");
        assert_eq!(me.status(), StatusCode::OK);
        let in_query = app
            .client
            .get(format!("{other}/v1/users/me?access_token={access}"))
            .send()
            .await
            .expect("me");
        assert_eq!(in_query.status(), StatusCode::UNAUTHORIZED);
    }
    let refreshed: serde_json::Value = app
        .client
        .post(format!("{base}/v1/sessions/refresh"))
        .json(&serde_json::json!({"refresh_token": refresh}))
        .send()
        .await
        .expect("refresh")
        .json()
        .await
        .expect("tokens");
    let new_access = refreshed["access_token"]
        .as_str()
        .expect("access")
        .to_owned();
    let rotated = refreshed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let logout = app
        .client
        .delete(format!("{base}/v1/sessions/current"))
        .bearer_auth(&new_access)
        .send()
        .await
        .expect("logout");
    assert!(logout.status().is_success(), "{base}: {}", logout.status());
    vec![
        ("access token", access),
        ("refresh token", refresh),
        ("refreshed access token", new_access),
        ("rotated refresh token", rotated),
    ]
}

/// Sam logs in over gRPC and calls `GetMe` with the token; returns the tokens.
async fn a_session_over_grpc(app: &TestApp, password: &str) -> Vec<Secret> {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut users = streambank_proto::v1::user_service_client::UserServiceClient::new(channel);
    let login = users
        .login(streambank_proto::v1::LoginRequest {
            username: "sam".into(),
            password: password.to_owned(),
            ..Default::default()
        })
        .await
        .expect("gRPC login")
        .into_inner();
    let mut me = tonic::Request::new(streambank_proto::v1::GetMeRequest::default());
    me.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", login.access_token)
            .parse()
            .expect("ascii"),
    );
    users.get_me(me).await.expect("gRPC GetMe");
    vec![
        ("gRPC access token", login.access_token),
        ("gRPC refresh token", login.refresh_token),
    ]
}

/// A whole journey at `RUST_LOG=trace` (register, verify with a code, log in on REST and gRPC,
/// calls with the token in a header and in `?access_token=`, refresh, log out, on all three
/// listeners) leaves no password, hash, token, verification code or key in the logs; the spans carry
/// route templates, not URIs.
#[tokio::test]
async fn no_secret_reaches_the_logs_even_at_trace() {
    let logs = Captured::install("trace");
    let app = TestApp::spawn("paseto").await;
    let password = format!("Pw-{}", uuid::Uuid::new_v4().simple());
    let code = format!("code{}", uuid::Uuid::new_v4().simple());
    let mut secrets: Vec<Secret> = vec![
        ("password", password.clone()),
        ("verification code", code.clone()),
        ("token key", TEST_KEY.to_owned()),
    ];

    let user_id = register_and_try_a_made_up_code(&app, &password, &code).await;
    app.bank.mark_email_verified(user_id).await.expect("verify");
    for base in [&app.rest_base, &app.gateway_base] {
        secrets.extend(a_session_over_http(&app, base, &password).await);
    }
    secrets.extend(a_session_over_grpc(&app, &password).await);
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(user_id)
        .fetch_one(&app.db.pool)
        .await
        .expect("hash");
    secrets.push(("password hash", hash));

    let text = logs.text();
    assert!(
        text.lines().filter(|l| l.contains(" DEBUG ")).count() > 20
            && text.contains("http request{method=\"GET\"")
            && text.contains("route=\"/v1/users/verify-email\"")
            && text.contains("gateway request{method=\"GET\"")
            && text.contains("route=\"/v1/users/me\""),
        "the logs were not captured at trace, or carry no route:\n{}",
        &text[..text.len().min(4000)]
    );
    for (what, secret) in &secrets {
        let leaks: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret.as_str()))
            .collect();
        assert!(
            leaks.is_empty(),
            "the {what} is in {} log line(s), first: {}",
            leaks.len(),
            leaks[0]
        );
    }
}

/// Refusals (4xx; gRPC's caller-fault codes) are logged at INFO, on REST, the gateway and gRPC alike,
/// and none at ERROR: an ERROR line is for an operator to look at.
#[tokio::test]
async fn refusals_are_logged_at_info_never_error() {
    let logs = Captured::install("info");
    let app = TestApp::spawn("paseto").await;
    for base in [&app.rest_base, &app.gateway_base] {
        for (method, path, body) in [
            (Method::GET, "/v1/users/me", None),
            (Method::GET, "/v1/nothing", None),
            (
                Method::POST,
                "/v1/users",
                Some(serde_json::json!({"username": "x"})),
            ),
        ] {
            let mut request = app.client.request(method, format!("{base}{path}"));
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.expect("an answer");
            assert!(response.status().is_client_error(), "{base}{path}");
        }
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut users = streambank_proto::v1::user_service_client::UserServiceClient::new(channel);
    let status = users
        .get_me(streambank_proto::v1::GetMeRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let status = users
        .create_user(streambank_proto::v1::CreateUserRequest::default())
        .await
        .expect_err("invalid");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let text = logs.text();
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("ERROR")).collect();
    assert!(
        errors.is_empty(),
        "refusals logged as errors:\n{}",
        errors.join("\n")
    );
    let refused = |span: &str, message: &str| {
        text.lines()
            .filter(|l| l.contains(" INFO ") && l.contains(span) && l.contains(message))
            .count()
    };
    assert_eq!(refused("http request{", "request refused"), 3, "{text}");
    assert_eq!(refused("gateway request{", "request refused"), 3, "{text}");
    // Two direct calls, and the gateway's: its unauthenticated and invalid calls reach gRPC too.
    assert!(refused("grpc call{", "call refused") >= 2, "{text}");
}

/// Every request is one INFO line inside its span, on all three listeners (so that a formatter that
/// prints the trace id prints it there): REST and the gateway name the method, the route template (not
/// the path or the query), the status and the latency; gRPC the method, `grpc-status` and the latency.
#[tokio::test]
async fn every_request_is_one_line_at_info() {
    let logs = Captured::install("info");
    let app = TestApp::spawn("paseto").await;
    let requests = [
        ("/", 200, "/"),
        ("/v1/users/me", 401, "/v1/users/me"),
        (
            "/v1/accounts/7/entries?page_token=tok-secret",
            401,
            "/v1/accounts/{id}/entries",
        ),
        ("/v1/nothing", 404, "unmatched"),
    ];
    for (listener, base) in [("rest", &app.rest_base), ("gateway", &app.gateway_base)] {
        for (i, (path, status, _)) in requests.iter().enumerate() {
            let response = app
                .client
                .get(format!("{base}{path}"))
                .header("x-request-id", format!("line-{listener}-{i}"))
                .send()
                .await
                .expect("an answer");
            assert_eq!(response.status().as_u16(), *status, "{base}{path}");
        }
    }
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut users = streambank_proto::v1::user_service_client::UserServiceClient::new(channel);
    let mut me = tonic::Request::new(streambank_proto::v1::GetMeRequest::default());
    me.metadata_mut()
        .insert("x-request-id", "line-grpc-0".parse().expect("ascii"));
    let status = users.get_me(me).await.expect_err("no token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let text = logs.text();
    let lines = |id: &str, messages: &[&str]| -> Vec<&str> {
        text.lines()
            .filter(|l| {
                l.contains(&format!("request_id=\"{id}\""))
                    || l.contains(&format!("request_id={id}"))
            })
            .filter(|l| {
                messages
                    .iter()
                    .any(|m| l.ends_with(m) || l.contains(&format!(" {m} ")))
            })
            .collect()
    };
    let http = ["request answered", "request refused", "request failed"];
    for (listener, span) in [("rest", "http request{"), ("gateway", "gateway request{")] {
        for (i, (_, status, route)) in requests.iter().enumerate() {
            let id = format!("line-{listener}-{i}");
            let found = lines(&id, &http);
            assert_eq!(found.len(), 1, "{id}: one line, not {found:?}\n{text}");
            let line = found[0];
            assert!(line.contains(" INFO ") && line.contains(span), "{line}");
            for field in [
                "method=\"GET\"".to_owned(),
                format!("route=\"{route}\""),
                format!("status={status}"),
                "latency_ms=".to_owned(),
            ] {
                assert!(line.contains(&field), "{id}: no {field} in {line}");
            }
            assert!(!line.contains("tok-secret"), "{line}");
        }
    }
    let found = lines(
        "line-grpc-0",
        &["call answered", "call refused", "call failed"],
    );
    assert_eq!(found.len(), 1, "one gRPC line, not {found:?}\n{text}");
    for field in [
        " INFO ",
        "grpc call{",
        "rpc.method=\"/streambank.v1.UserService/GetMe\"",
        "grpc.status=16",
        "latency_ms=",
    ] {
        assert!(found[0].contains(field), "no {field} in {}", found[0]);
    }
}

/// Both OpenAPI documents state the constraints the server enforces (ids and amounts >= 1, the three
/// currencies, page sizes 1 to 100, the fields and parameters it needs), and REST's every error status its shared layers answer with
/// (401 where a token is needed, 400 with parameters or a body, 413 with a body, 429 where limited).
#[test]
fn the_documents_state_statuses_and_constraints() {
    let rest: serde_json::Value =
        serde_json::from_str(&streambank_api::rest::openapi::document_json()).expect("REST");
    let gateway: serde_json::Value = serde_json::from_str(
        &streambank_api::gateway::openapi::document_json(&streambank_proto::descriptor_pool())
            .expect("gateway"),
    )
    .expect("gateway JSON");
    for (path, item) in rest["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = &op["responses"];
            let needs = |status: &str| responses[status].is_object();
            for status in ["431", "500", "503"] {
                assert!(needs(status), "{method} {path}: no {status}");
            }
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(needs("401"), "{method} {path}: no 401");
            }
            if op["requestBody"].is_object() {
                assert!(needs("400") && needs("413"), "{method} {path}: no 400/413");
            }
        }
    }
    assert!(rest["paths"]["/v1/sessions"]["post"]["responses"]["429"].is_object());
    assert!(rest["paths"]["/v1/accounts"]["get"]["responses"]["400"].is_object());
    assert!(
        rest["paths"]["/v1/users/verify-email"]["get"]["responses"]["200"]["content"]["text/html"]
            .is_object()
    );
    for (name, document, transfer) in [
        ("REST", &rest, "TransferRequest"),
        ("gateway", &gateway, "CreateTransferRequest"),
    ] {
        let id = &document["paths"]["/v1/accounts/{id}"]["get"]["parameters"][0]["schema"];
        assert_eq!(id["minimum"], 1, "{name}: {id}");
        let page_size = document["paths"]["/v1/accounts"]["get"]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .find(|p| p["name"] == "page_size")
            .expect("page_size")["schema"]
            .clone();
        assert_eq!(
            (page_size["minimum"].clone(), page_size["maximum"].clone()),
            (serde_json::json!(1), serde_json::json!(100)),
            "{name}: {page_size}"
        );
        assert_eq!(
            document["components"]["schemas"][transfer]["required"],
            serde_json::json!(["from_account_id", "to_account_id", "amount", "currency"]),
            "{name}"
        );
        let verify = &document["paths"]["/v1/users/verify-email"]["get"]["parameters"];
        assert!(
            verify
                .as_array()
                .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["required"] == true)),
            "{name}: {verify}"
        );
        let login = &document["paths"]["/v1/sessions"]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        let login = login["$ref"].as_str().map_or(login, |reference| {
            document
                .pointer(reference.trim_start_matches('#'))
                .expect("the login body")
        });
        assert_eq!(login["required"], serde_json::json!(["password"]), "{name}");
        let body = &document["components"]["schemas"][transfer]["properties"];
        assert_eq!(body["amount"]["minimum"], 1, "{name}: {body}");
        assert_eq!(body["to_account_id"]["minimum"], 1, "{name}: {body}");
        assert_eq!(
            body["currency"]["enum"],
            serde_json::json!(["USD", "EUR", "CAD"]),
            "{name}: {body}"
        );
    }
}
