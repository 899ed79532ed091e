//! Token attacks, refresh rotation and reuse detection, ownership, and rate limits: all over HTTP.

use crate::common::{PASSWORD, TEST_KEY, TestApp, Transport, expect_error};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use streambank_auth::{Claims, TokenKey, TokenType};
use streambank_domain::Role;

fn forge(kind: &str, key: &str, claims: &Claims) -> String {
    streambank_auth::maker(
        kind.parse().expect("token kind"),
        &TokenKey::parse(key).expect("key"),
    )
    .expect("maker")
    .create(claims)
    .expect("create")
}

/// Forged, tampered, expired, misused, missing and garbage tokens are each 401 with their reason; with
/// JWTs, `alg: none` too.
async fn attacks(transport: Transport, kind: &str) {
    let app = TestApp::spawn_on(transport, kind).await;
    let ann = app.customer("ann").await;
    let session_id = ann.session_id.parse().expect("uuid");
    let now = chrono::Utc::now().timestamp();
    let claims = |typ, exp| Claims {
        jti: uuid::Uuid::new_v4(),
        user_id: ann.user_id,
        session_id,
        role: Role::Customer,
        typ,
        iat: now - 10,
        exp,
    };
    assert_eq!(
        app.get("/v1/users/me", &ann.access).await.status(),
        StatusCode::OK
    );

    let mut tampered = ann.access.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    let other_key = forge(
        kind,
        "another-key-0123456789-abcdefghi",
        &claims(TokenType::Access, now + 60),
    );
    let expired = forge(kind, TEST_KEY, &claims(TokenType::Access, now - 1));
    // (what, the token if any, the reason)
    let mut cases: Vec<(&str, Option<String>, &str)> = vec![
        ("tampered", Some(tampered), "TOKEN_INVALID"),
        ("another key", Some(other_key), "TOKEN_INVALID"),
        ("expired", Some(expired), "TOKEN_EXPIRED"),
        (
            "refresh token as access token",
            Some(ann.refresh.clone()),
            "TOKEN_INVALID",
        ),
        ("garbage", Some("garbage".to_owned()), "TOKEN_INVALID"),
        ("missing", None, "TOKEN_MISSING"),
    ];
    if kind == "jwt" {
        let payload = ann.access.split('.').nth(1).expect("payload");
        let forged = format!(
            "{}.{payload}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#)
        );
        cases.push(("alg none", Some(forged), "TOKEN_INVALID"));
    }
    for (name, token, reason) in cases {
        let response = app
            .call(Method::GET, "/v1/users/me", token.as_deref(), None)
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{name}");
        expect_error(
            response,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            reason,
        )
        .await;
    }
}

/// A token of a deleted user (the session went with the user) and one of a revoked session, issued
/// before the revocation, are 401 `TOKEN_REVOKED`; the user's other sessions live on.
async fn revoked(transport: Transport, kind: &str) {
    let app = TestApp::spawn_on(transport, kind).await;
    let ann = app.customer("ann").await;
    let gone = app.customer("gone").await;
    sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(gone.user_id)
        .execute(&app.db.pool)
        .await
        .expect("delete");
    expect_error(
        app.get("/v1/users/me", &gone.access).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;

    let second = app.login("ann").await;
    let logout = app
        .call(
            Method::DELETE,
            "/v1/sessions/current",
            Some(&second.access),
            None,
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    expect_error(
        app.get("/v1/users/me", &second.access).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;
    assert_eq!(
        app.get("/v1/users/me", &ann.access).await.status(),
        StatusCode::OK,
        "other sessions live on"
    );
}

async fn attacks_with_paseto(transport: Transport) {
    attacks(transport, "paseto").await;
}

async fn attacks_with_jwt(transport: Transport) {
    attacks(transport, "jwt").await;
}

async fn revoked_with_paseto(transport: Transport) {
    revoked(transport, "paseto").await;
}

async fn revoked_with_jwt(transport: Transport) {
    revoked(transport, "jwt").await;
}

over_both_transports!(
    token_attacks_get_401_with_paseto,
    super::attacks_with_paseto
);
over_both_transports!(token_attacks_get_401_with_jwt, super::attacks_with_jwt);
over_both_transports!(
    revoked_tokens_get_401_with_paseto,
    super::revoked_with_paseto
);
over_both_transports!(revoked_tokens_get_401_with_jwt, super::revoked_with_jwt);

/// `POST /v1/sessions/refresh` with `token` as the refresh token.
async fn refresh(app: &TestApp, token: &str) -> reqwest::Response {
    app.call(
        Method::POST,
        "/v1/sessions/refresh",
        None,
        Some(json!({"refresh_token": token})),
    )
    .await
}

async fn refresh_rotates_and_reuse_revokes_the_session(transport: Transport) {
    let app = TestApp::spawn_on(transport, "paseto").await;
    let ann = app.customer("ann").await;

    let first = refresh(&app, &ann.refresh).await;
    assert_eq!(first.status(), StatusCode::OK);
    let first: Value = first.json().await.expect("json");
    let rotated = first["refresh_token"].as_str().expect("refresh").to_owned();
    let access = first["access_token"].as_str().expect("access").to_owned();
    assert_ne!(rotated, ann.refresh);
    assert_eq!(
        app.get("/v1/users/me", &access).await.status(),
        StatusCode::OK
    );

    // The rotated-out token is presented again: someone holds a copy. The whole session is revoked.
    let reuse = refresh(&app, &ann.refresh).await;
    expect_error(
        reuse,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;
    expect_error(
        app.get("/v1/users/me", &access).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;
    let current = refresh(&app, &rotated).await;
    expect_error(
        current,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_REVOKED",
    )
    .await;

    // An access token is not a refresh token.
    let fresh = app.login("ann").await;
    let wrong = refresh(&app, &fresh.access).await;
    expect_error(
        wrong,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "TOKEN_INVALID",
    )
    .await;
}

async fn unknown_users_and_wrong_passwords_look_the_same(transport: Transport) {
    let app = TestApp::spawn_on(transport, "paseto").await;
    app.customer("ann").await;
    let wrong = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"username": "ann", "password": "not the password"})),
        )
        .await;
    let wrong = expect_error(
        wrong,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "INVALID_CREDENTIALS",
    )
    .await;
    let unknown = app
        .call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"username": "nobody", "password": PASSWORD})),
        )
        .await;
    let unknown = expect_error(
        unknown,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "INVALID_CREDENTIALS",
    )
    .await;
    assert_eq!(wrong, unknown);
    // Postgres text cannot hold a NUL: a login with one is wrong credentials, not a failed query.
    for field in ["username", "email"] {
        let nul = app
            .call(
                Method::POST,
                "/v1/sessions",
                None,
                Some(json!({field: "ann\u{0}", "password": PASSWORD})),
            )
            .await;
        let nul = expect_error(
            nul,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "INVALID_CREDENTIALS",
        )
        .await;
        assert_eq!(nul, unknown, "a login by {field} with a NUL");
    }
}

async fn other_peoples_accounts_are_not_found_and_deposits_need_a_banker(transport: Transport) {
    let app = TestApp::spawn_on(transport, "paseto").await;
    let ann = app.customer("ann").await;
    let bob = app.customer("bob").await;
    let banker = app.banker("banker").await;
    let ann_usd = app.open_account(&ann, "USD").await;
    let bob_usd = app.open_account(&bob, "USD").await;
    app.deposit(&banker, bob_usd, 1_000, "USD").await;

    let read = expect_error(
        app.get(&format!("/v1/accounts/{bob_usd}"), &ann.access)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "ACCOUNT_NOT_FOUND",
    )
    .await;
    let missing = expect_error(
        app.get("/v1/accounts/987654", &ann.access).await,
        StatusCode::NOT_FOUND,
        "not_found",
        "ACCOUNT_NOT_FOUND",
    )
    .await;
    assert_eq!(
        read["error"]["message"]
            .as_str()
            .map(|m| m.replace(&bob_usd.to_string(), "N")),
        missing["error"]["message"]
            .as_str()
            .map(|m| m.replace("987654", "N")),
        "someone else's account reads exactly like a missing one"
    );
    expect_error(
        app.get(&format!("/v1/accounts/{bob_usd}/entries"), &ann.access)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
        "ACCOUNT_NOT_FOUND",
    )
    .await;
    let steal = app
        .post("/v1/transfers", &ann.access, json!({"from_account_id": bob_usd, "to_account_id": ann_usd, "amount": 10, "currency": "USD"}))
        .await;
    expect_error(
        steal,
        StatusCode::NOT_FOUND,
        "not_found",
        "ACCOUNT_NOT_FOUND",
    )
    .await;

    let deposit = app
        .post(
            &format!("/v1/accounts/{ann_usd}/deposits"),
            &ann.access,
            json!({"amount": 100, "currency": "USD"}),
        )
        .await;
    expect_error(
        deposit,
        StatusCode::FORBIDDEN,
        "permission_denied",
        "BANKER_ONLY",
    )
    .await;
    assert_eq!(
        app.get(&format!("/v1/accounts/{bob_usd}"), &banker.access)
            .await
            .status(),
        StatusCode::OK,
        "bankers see all"
    );
    assert_eq!(app.db.count("transfers").await, 0);
}

#[tokio::test]
async fn login_and_registration_are_rate_limited_per_ip() {
    let app = TestApp::spawn_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "3")]).await;
    let attempt = || {
        app.call(
            Method::POST,
            "/v1/sessions",
            None,
            Some(json!({"username": "nobody", "password": "whatever1"})),
        )
    };
    for _ in 0..3 {
        assert_eq!(attempt().await.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = attempt().await;
    let retry_after: u64 = limited
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    expect_error(
        limited,
        StatusCode::TOO_MANY_REQUESTS,
        "resource_exhausted",
        "RATE_LIMITED",
    )
    .await;
    // Other routes are not limited.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .expect("GET")
            .status(),
        StatusCode::OK
    );
}

/// Waits until a process's session cache is live (its LISTEN connection is up).
async fn until_cache_is_live(sessions: &streambank_service::Sessions) {
    for _ in 0..100 {
        if sessions.cache_enabled() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("the session invalidation listener did not connect within 2 s");
}

#[tokio::test]
async fn a_logout_on_one_replica_stops_the_token_on_another_at_once() {
    let app = TestApp::spawn("paseto").await;
    let (peer, peer_sessions) = app.peer().await;
    until_cache_is_live(&app.sessions).await;
    until_cache_is_live(&peer_sessions).await;
    let ann = app.customer("ann").await;
    let me = |base: String, token: String| {
        let client = app.client.clone();
        async move {
            client
                .get(format!("{base}/v1/users/me"))
                .bearer_auth(token)
                .send()
                .await
                .expect("GET")
                .status()
        }
    };
    // The peer caches the live session...
    assert_eq!(me(peer.clone(), ann.access.clone()).await, StatusCode::OK);
    assert_eq!(me(peer.clone(), ann.access.clone()).await, StatusCode::OK);

    // ...and forgets it when the session is revoked through the other replica.
    let logout = app
        .call(
            Method::DELETE,
            "/v1/sessions/current",
            Some(&ann.access),
            None,
        )
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let started = std::time::Instant::now();
    while me(peer.clone(), ann.access.clone()).await != StatusCode::UNAUTHORIZED {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the peer still accepts a revoked session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    println!(
        "revocation reached the other replica after {:?}",
        started.elapsed()
    );

    // A role change is seen at once as well.
    let bob = app.customer("bob").await;
    let account = app.open_account(&bob, "USD").await;
    let deposit = || {
        app.client
            .post(format!("{peer}/v1/accounts/{account}/deposits"))
            .bearer_auth(&bob.access)
            .json(&json!({"amount": 5, "currency": "USD"}))
            .send()
    };
    assert_eq!(
        deposit().await.expect("send").status(),
        StatusCode::FORBIDDEN
    );
    app.bank
        .grant_role("bob", Role::Banker)
        .await
        .expect("grant");
    let started = std::time::Instant::now();
    while deposit().await.expect("send").status() != StatusCode::CREATED {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "the peer kept the old role"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

over_both_transports!(
    refresh_rotates_and_reuse_revokes_the_session,
    super::refresh_rotates_and_reuse_revokes_the_session
);

over_both_transports!(
    unknown_users_and_wrong_passwords_look_the_same,
    super::unknown_users_and_wrong_passwords_look_the_same
);

over_both_transports!(
    other_peoples_accounts_are_not_found_and_deposits_need_a_banker,
    super::other_peoples_accounts_are_not_found_and_deposits_need_a_banker
);

/// One login rule on every listener: a blank `username` beside an `email` logs in by email (REST refused
/// it while gRPC and the gateway accepted it); a blank one of each is wrong credentials.
#[tokio::test]
async fn a_blank_username_beside_an_email_logs_in_by_email_on_every_listener() {
    for transport in [Transport::Rest, Transport::Gateway] {
        let app = TestApp::spawn_on(transport, "paseto").await;
        app.customer("ann").await;
        for (login, expected) in [
            (
                json!({"username": "", "email": "ann@example.com", "password": PASSWORD}),
                StatusCode::CREATED,
            ),
            (
                json!({"username": "  ", "email": "ann@example.com", "password": PASSWORD}),
                StatusCode::CREATED,
            ),
            (
                json!({"username": "ann", "email": "", "password": PASSWORD}),
                StatusCode::CREATED,
            ),
            (
                json!({"username": "", "email": "", "password": PASSWORD}),
                StatusCode::UNAUTHORIZED,
            ),
        ] {
            let response = app
                .call(Method::POST, "/v1/sessions", None, Some(login.clone()))
                .await;
            assert_eq!(response.status(), expected, "{transport:?} {login}");
        }
    }
}
