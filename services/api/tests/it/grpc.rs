//! The gRPC server through a real gRPC client over a socket: the journey's steps (registration,
//! verification, login, deposits, transfers, statements, logout), status codes and their details,
//! idempotency metadata, the authentication table over every method of the descriptor, panic
//! recovery, rate limits and health.

use std::convert::Infallible;
use std::task::{Context, Poll};

use crate::common::{PASSWORD, TEST_KEY, TestApp};
use bytes::{Buf as _, BufMut as _};
use streambank_auth::{Claims, TokenKey, TokenType};
use streambank_domain::Role;
use streambank_proto::v1 as pb;
use streambank_proto::v1::account_service_client::AccountServiceClient;
use streambank_proto::v1::transfer_service_client::TransferServiceClient;
use streambank_proto::v1::user_service_client::UserServiceClient;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

async fn channel(app: &TestApp) -> Channel {
    Channel::from_shared(format!("http://{}", app.grpc_addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the gRPC listener")
}

/// `message` with `authorization: Bearer <token>`.
fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).expect("ascii"),
    );
    request
}

fn reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

async fn login(users: &mut UserServiceClient<Channel>, username: &str) -> pb::LoginResponse {
    users
        .login(pb::LoginRequest {
            username: username.into(),
            email: String::new(),
            password: PASSWORD.into(),
        })
        .await
        .expect("login")
        .into_inner()
}

/// A good registration of `username` at `email`.
fn registration(username: &str, email: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        username: username.into(),
        full_name: "Ann".into(),
        email: email.into(),
        password: PASSWORD.into(),
    }
}

/// Health answers SERVING for the whole server and for each service.
#[tokio::test]
async fn health_answers_for_the_server_and_each_service() {
    let app = TestApp::spawn("paseto").await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&app).await);
    for service in ["", "streambank.v1.TransferService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{service:?}"
        );
    }
}

/// A registration reports every bad field at once in `BadRequest`; a taken username is
/// `AlreadyExists`.
#[tokio::test]
async fn registration_reports_every_bad_field_and_a_taken_username() {
    let app = TestApp::spawn("paseto").await;
    let mut users = UserServiceClient::new(channel(&app).await);
    let bad = users
        .create_user(pb::CreateUserRequest {
            username: "A".into(),
            full_name: String::new(),
            email: "nope".into(),
            password: "short".into(),
        })
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(reason(&bad), "VALIDATION_FAILED");
    let fields: Vec<String> = bad
        .get_details_bad_request()
        .expect("field violations")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert!(
        fields.len() >= 3 && fields.contains(&"username".to_owned()),
        "{fields:?}"
    );
    users
        .create_user(registration("ann", "ann@example.com"))
        .await
        .expect("register");
    let taken = users
        .create_user(registration("ann", "ann2@example.com"))
        .await
        .expect_err("taken");
    assert_eq!(taken.code(), Code::AlreadyExists);
    assert_eq!(reason(&taken), "USERNAME_TAKEN");
}

/// Login with the right password is `FailedPrecondition` until the email is verified; after, it
/// answers the user and a token that `GetMe` takes, with the request id echoed.
#[tokio::test]
async fn login_waits_for_the_verified_email() {
    let app = TestApp::spawn("paseto").await;
    let mut users = UserServiceClient::new(channel(&app).await);
    let ann = users
        .create_user(registration("ann", "ann@example.com"))
        .await
        .expect("register")
        .into_inner();
    let early = users
        .login(pb::LoginRequest {
            username: "ann".into(),
            email: String::new(),
            password: PASSWORD.into(),
        })
        .await
        .expect_err("unverified");
    assert_eq!(early.code(), Code::FailedPrecondition);
    assert_eq!(reason(&early), "EMAIL_NOT_VERIFIED");
    let verification = app.verification(ann.id, "ann@example.com").await;
    let verified = users
        .verify_email(pb::VerifyEmailRequest {
            id: verification.id,
            code: verification.code.clone(),
        })
        .await
        .expect("verify")
        .into_inner();
    assert!(verified.verified);
    assert_eq!(verified.user_id, ann.id);

    let session = login(&mut users, "ann").await;
    assert_eq!(session.user.as_ref().expect("user").id, ann.id);
    let me = users
        .get_me(authed(pb::GetMeRequest {}, &session.access_token))
        .await
        .expect("me");
    assert!(
        me.metadata().get("x-request-id").is_some(),
        "the request id is echoed"
    );
    assert_eq!(me.into_inner().username, "ann");
}

/// Ann with a USD account opened over gRPC, Bob with one opened over REST, and a banker (their access
/// tokens), with a channel to the gRPC listener.
struct Parties {
    app: TestApp,
    channel: Channel,
    ann: String,
    banker: String,
    ann_usd: i64,
    bob_usd: i64,
}

impl Parties {
    async fn new() -> Self {
        let app = TestApp::spawn("paseto").await;
        let channel = channel(&app).await;
        let mut accounts = AccountServiceClient::new(channel.clone());
        let ann = app.customer("ann").await.access;
        let bob = app.customer("bob").await;
        let banker = app.banker("banker").await.access;
        let ann_usd = accounts
            .open_account(authed(
                pb::OpenAccountRequest {
                    currency: "USD".into(),
                },
                &ann,
            ))
            .await
            .expect("open")
            .into_inner()
            .id;
        let bob_usd = app.open_account(&bob, "USD").await;
        Self {
            app,
            channel,
            ann,
            banker,
            ann_usd,
            bob_usd,
        }
    }

    fn accounts(&self) -> AccountServiceClient<Channel> {
        AccountServiceClient::new(self.channel.clone())
    }

    fn transfers(&self) -> TransferServiceClient<Channel> {
        TransferServiceClient::new(self.channel.clone())
    }

    /// A deposit of `amount` USD into Ann's account with `token`.
    async fn deposit(&self, token: &str, amount: i64) -> Result<pb::DepositResponse, Status> {
        let request = pb::DepositRequest {
            id: self.ann_usd,
            amount,
            currency: "USD".into(),
        };
        self.accounts()
            .deposit(authed(request, token))
            .await
            .map(tonic::Response::into_inner)
    }

    /// A transfer of `amount` USD from Ann to Bob, with `idempotency-key: key` when given.
    fn transfer(
        &self,
        amount: i64,
        key: Option<&'static str>,
    ) -> Request<pb::CreateTransferRequest> {
        let mut request = authed(
            pb::CreateTransferRequest {
                from_account_id: self.ann_usd,
                to_account_id: self.bob_usd,
                amount,
                currency: "USD".into(),
            },
            &self.ann,
        );
        if let Some(key) = key {
            request
                .metadata_mut()
                .insert("idempotency-key", MetadataValue::from_static(key));
        }
        request
    }
}

/// A customer's deposit is `PermissionDenied`; a banker's lands in the balance.
#[tokio::test]
async fn deposits_need_a_banker() {
    let p = Parties::new().await;
    let refused = p
        .deposit(&p.ann, 100)
        .await
        .expect_err("customers do not deposit");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let deposit = p.deposit(&p.banker, 10_000).await.expect("deposit");
    assert_eq!(deposit.account.expect("account").balance, 10_000);
}

/// A transfer sent twice with one idempotency key moves money once and answers the same; the key
/// with another body is `FailedPrecondition`.
#[tokio::test]
async fn an_idempotency_key_moves_money_once() {
    let p = Parties::new().await;
    p.deposit(&p.banker, 10_000).await.expect("deposit");
    let first = p
        .transfers()
        .create_transfer(p.transfer(2_500, Some("grpc-key-1")))
        .await
        .expect("transfer")
        .into_inner();
    let again = p
        .transfers()
        .create_transfer(p.transfer(2_500, Some("grpc-key-1")))
        .await
        .expect("replay")
        .into_inner();
    assert_eq!(first.transfer, again.transfer);
    assert_eq!(first.from_account.as_ref().expect("from").balance, 7_500);
    let mismatch = p
        .transfers()
        .create_transfer(p.transfer(1, Some("grpc-key-1")))
        .await
        .expect_err("same key, other body");
    assert_eq!(mismatch.code(), Code::FailedPrecondition);
    assert_eq!(reason(&mismatch), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(p.app.db.count("transfers").await, 1);
}

/// Refusals carry their code, and their reason in `ErrorInfo`: an overdraft, someone else's account,
/// an id of 0, a page size of 0.
#[tokio::test]
async fn refusals_carry_their_code_and_reason() {
    let p = Parties::new().await;
    p.deposit(&p.banker, 10_000).await.expect("deposit");
    let overdraft = p
        .transfers()
        .create_transfer(p.transfer(1_000_000, None))
        .await
        .expect_err("overdraft");
    let others = p
        .accounts()
        .get_account(authed(pb::GetAccountRequest { id: p.bob_usd }, &p.ann))
        .await
        .expect_err("bob's account");
    let zero = p
        .accounts()
        .get_account(authed(pb::GetAccountRequest { id: 0 }, &p.ann))
        .await
        .expect_err("id 0");
    let page = pb::ListAccountsRequest {
        page_size: Some(0),
        page_token: None,
    };
    let bad_page = p
        .accounts()
        .list_accounts(authed(page, &p.ann))
        .await
        .expect_err("page size 0");
    // (what, the status, its code, its reason where checked)
    let cases = [
        (
            "overdraft",
            overdraft,
            Code::FailedPrecondition,
            Some("INSUFFICIENT_FUNDS"),
        ),
        ("Bob's account", others, Code::NotFound, None),
        ("id 0", zero, Code::InvalidArgument, None),
        ("page size 0", bad_page, Code::InvalidArgument, None),
    ];
    for (what, status, code, expected) in cases {
        assert_eq!(status.code(), code, "{what}: {status:?}");
        if let Some(expected) = expected {
            assert_eq!(reason(&status), expected, "{what}");
        }
    }
}

/// A statement lists the account's entries newest first.
#[tokio::test]
async fn a_statement_lists_the_entries_newest_first() {
    let p = Parties::new().await;
    p.deposit(&p.banker, 10_000).await.expect("deposit");
    p.transfers()
        .create_transfer(p.transfer(2_500, None))
        .await
        .expect("transfer");
    let statement = p
        .accounts()
        .list_entries(authed(
            pb::ListEntriesRequest {
                id: p.ann_usd,
                page_size: Some(10),
                page_token: None,
            },
            &p.ann,
        ))
        .await
        .expect("statement")
        .into_inner();
    let amounts: Vec<i64> = statement.entries.iter().map(|e| e.amount).collect();
    assert_eq!(amounts, [-2_500, 10_000]);
}

/// After `Logout` the token is refused at once, with the reason.
#[tokio::test]
async fn a_logged_out_token_is_refused_at_once() {
    let app = TestApp::spawn("paseto").await;
    let ann = app.customer("ann").await;
    let mut users = UserServiceClient::new(channel(&app).await);
    users
        .logout(authed(pb::LogoutRequest {}, &ann.access))
        .await
        .expect("logout");
    let after = users
        .get_me(authed(pb::GetMeRequest {}, &ann.access))
        .await
        .expect_err("revoked");
    assert_eq!(after.code(), Code::Unauthenticated);
    assert_eq!(reason(&after), "TOKEN_REVOKED");
}

/// Passes protobuf bytes through untouched, so that a test can call any method of the descriptor.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Calls `path` with an empty message and, when given, `authorization: <value>`.
async fn call_raw(
    channel: &Channel,
    path: &str,
    authorization: Option<&str>,
) -> Result<(), Status> {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let mut request = Request::new(Vec::new());
    if let Some(value) = authorization {
        request.metadata_mut().insert(
            "authorization",
            MetadataValue::try_from(value).expect("ascii"),
        );
    }
    grpc.unary(request, path.parse().expect("path"), RawCodec)
        .await
        .map(|_| ())
}

/// Every method of the descriptor either needs a token, refusing each bad kind (missing, not a
/// bearer, malformed, a refresh token, expired, revoked) with its reason and letting a good one past,
/// or is one of the four public methods.
#[tokio::test]
async fn every_protected_method_refuses_bad_tokens() {
    let app = TestApp::spawn("jwt").await;
    let channel = channel(&app).await;
    let ann = app.customer("ann").await;
    let revoked = app.customer("revoked").await;
    let mut users = UserServiceClient::new(channel.clone());
    users
        .logout(authed(pb::LogoutRequest {}, &revoked.access))
        .await
        .expect("logout");
    let now = chrono::Utc::now().timestamp();
    let expired = streambank_auth::maker(
        streambank_auth::TokenKind::Jwt,
        &TokenKey::parse(TEST_KEY).expect("key"),
    )
    .expect("maker")
    .create(&Claims {
        jti: uuid::Uuid::new_v4(),
        user_id: ann.user_id,
        session_id: ann.session_id.parse().expect("uuid"),
        role: Role::Customer,
        typ: TokenType::Access,
        iat: now - 120,
        exp: now - 60,
    })
    .expect("forge");
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("missing", None, "TOKEN_MISSING"),
        (
            "not a bearer",
            Some(format!("Basic {}", ann.access)),
            "TOKEN_MISSING",
        ),
        (
            "malformed",
            Some("Bearer not-a-token".into()),
            "TOKEN_INVALID",
        ),
        (
            "refresh as access",
            Some(format!("Bearer {}", ann.refresh)),
            "TOKEN_INVALID",
        ),
        (
            "expired",
            Some(format!("Bearer {expired}")),
            "TOKEN_EXPIRED",
        ),
        (
            "revoked",
            Some(format!("Bearer {}", revoked.access)),
            "TOKEN_REVOKED",
        ),
    ];

    let pool = streambank_proto::descriptor_pool();
    let mut protected = 0;
    let mut public = Vec::new();
    for service in streambank_proto::SERVICES {
        let service = pool.get_service_by_name(service).expect("service");
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            if !streambank_api::grpc::layers::requires_token(&path) {
                public.push(method.name().to_owned());
                continue;
            }
            protected += 1;
            for (case, authorization, want) in &cases {
                let status = call_raw(&channel, &path, authorization.as_deref())
                    .await
                    .expect_err(&format!("{path} with a {case} token"));
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{path}, {case}: {status:?}"
                );
                assert_eq!(reason(&status), *want, "{path}, {case}");
            }
            // A good token gets past authentication (whatever the empty request then earns). Each
            // method gets a fresh session, since one of them is Logout.
            let fresh = app.login("ann").await;
            let with_token =
                call_raw(&channel, &path, Some(&format!("Bearer {}", fresh.access))).await;
            if let Err(status) = with_token {
                assert_ne!(status.code(), Code::Unauthenticated, "{path}: {status:?}");
            }
        }
    }
    assert_eq!(protected, 11, "every protected method was tried");
    public.sort();
    assert_eq!(public, ["CreateUser", "Login", "Refresh", "VerifyEmail"]);
}

/// The public methods work without any token: register, verify, log in, refresh.
#[tokio::test]
async fn the_public_methods_work_without_a_token() {
    let app = TestApp::spawn("jwt").await;
    let mut users = UserServiceClient::new(channel(&app).await);
    let carol = users
        .create_user(pb::CreateUserRequest {
            username: "carol".into(),
            full_name: "Carol".into(),
            email: "carol@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("register without a token")
        .into_inner();
    let verification = app.verification(carol.id, "carol@example.com").await;
    users
        .verify_email(pb::VerifyEmailRequest {
            id: verification.id,
            code: verification.code,
        })
        .await
        .expect("verify without a token");
    let session = login(&mut users, "carol").await;
    let refreshed = users
        .refresh(pb::RefreshRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .expect("refresh without a token")
        .into_inner();
    assert_ne!(refreshed.refresh_token, session.refresh_token);
}

/// A call that writes: the server is still serving after whatever came before.
async fn registration_still_works(channel: Channel) {
    UserServiceClient::new(channel)
        .create_user(pb::CreateUserRequest {
            username: "after".into(),
            full_name: "After".into(),
            email: "after@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("the next call succeeds");
}

/// A service whose only method panics.
#[derive(Debug, Clone, Copy)]
struct Panics;

impl tonic::server::NamedService for Panics {
    const NAME: &'static str = "streambank.test.Panics";
}

impl tower::Service<axum::http::Request<tonic::body::Body>> for Panics {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        panic!("a bug in a handler");
    }
}

#[tokio::test]
async fn a_panicking_method_answers_internal_and_the_server_keeps_serving() {
    let app = TestApp::spawn_customized(&[], |api| api.add_grpc_service(Panics)).await;
    let channel = channel(&app).await;
    for _ in 0..2 {
        let status = call_raw(&channel, "/streambank.test.Panics/Boom", None)
            .await
            .expect_err("it panics");
        assert_eq!(status.code(), Code::Internal, "{status:?}");
        assert!(!status.message().contains("a bug"), "{}", status.message());
    }
    registration_still_works(channel).await;
}

#[tokio::test]
async fn login_and_registration_are_rate_limited_per_ip_over_grpc() {
    let app = TestApp::spawn_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "2")]).await;
    let mut users = UserServiceClient::new(channel(&app).await);
    let attempt = || pb::LoginRequest {
        username: "nobody".into(),
        email: String::new(),
        password: "wrong password".into(),
    };
    for _ in 0..2 {
        let status = users.login(attempt()).await.expect_err("unknown user");
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let limited = users.login(attempt()).await.expect_err("limited");
    assert_eq!(limited.code(), Code::ResourceExhausted);
    assert_eq!(reason(&limited), "RATE_LIMITED");
    // Only this process's own gateway is believed about its caller: a client on loopback, as the
    // gateway is, that names another address in x-forwarded-for is still itself.
    let mut forged = tonic::Request::new(attempt());
    forged
        .metadata_mut()
        .insert("x-forwarded-for", "198.51.100.9".parse().expect("ascii"));
    let still = users.login(forged).await.expect_err("limited");
    assert_eq!(still.code(), Code::ResourceExhausted, "{still:?}");
    let retry_after: u64 = limited
        .metadata()
        .get("retry-after")
        .expect("retry-after")
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(retry_after >= 1);
}

#[tokio::test]
async fn grpc_calls_are_counted_by_method_and_code_on_the_metrics_endpoint() {
    let app = TestApp::spawn("paseto").await;
    let channel = channel(&app).await;
    let mut users = UserServiceClient::new(channel.clone());
    users
        .create_user(pb::CreateUserRequest {
            username: "counted".into(),
            full_name: "Counted".into(),
            email: "counted@example.com".into(),
            password: PASSWORD.into(),
        })
        .await
        .expect("CreateUser");
    for _ in 0..2 {
        let refused = call_raw(&channel, "/streambank.v1.UserService/GetMe", None)
            .await
            .expect_err("no token");
        assert_eq!(refused.code(), Code::Unauthenticated);
    }
    // Paths that are no method: refused (a token is asked for first under streambank.v1), and counted
    // as one `unknown` series however many there are.
    for (path, code) in [
        ("/streambank.v1.Nope/Nothing", Code::Unauthenticated),
        ("/made.up/Path", Code::Unimplemented),
    ] {
        let unknown = call_raw(&channel, path, None).await.expect_err("unknown");
        assert_eq!(unknown.code(), code, "{path}");
    }
    let metrics = app.metrics().await;
    for line in [
        "grpc_requests_total{method=\"/streambank.v1.UserService/CreateUser\",code=\"Ok\"} 1\n",
        "grpc_requests_total{method=\"/streambank.v1.UserService/GetMe\",code=\"Unauthenticated\"} 2\n",
        "grpc_requests_total{method=\"unknown\",code=\"Unauthenticated\"} 1\n",
        "grpc_requests_total{method=\"unknown\",code=\"Unimplemented\"} 1\n",
        "grpc_request_duration_seconds_count{method=\"/streambank.v1.UserService/CreateUser\"} 1\n",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(
        !metrics.contains("made.up") && !metrics.contains("Nope"),
        "unknown paths make no series of their own"
    );
}

/// Sends `body` as the whole HTTP/2 request body of a call to `path` (frames and all, so that a test
/// can send what no client library would), and returns the status the server answered with.
async fn call_frames(channel: &Channel, path: &str, body: Vec<u8>) -> Status {
    use tower::ServiceExt as _;

    let request = axum::http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(axum::body::Body::from(body)))
        .expect("request");
    let response = channel.clone().oneshot(request).await.expect("an answer");
    assert_eq!(response.status(), axum::http::StatusCode::OK);
    // Every answer here is trailers-only: the status is in the headers.
    Status::from_header_map(response.headers()).expect("a grpc-status in the headers")
}

/// A gRPC length-prefixed message: the compressed flag, the length, the bytes.
fn frame(compressed: bool, declared_len: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(compressed)];
    out.extend_from_slice(&declared_len.to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

#[tokio::test]
async fn requests_tonic_cannot_read_are_answered_in_the_contracts_shape() {
    let app = TestApp::spawn("paseto").await;
    let channel = channel(&app).await;
    let login = "/streambank.v1.UserService/Login";

    // `username` (field 1) holding bytes that are not UTF-8: the caller's mistake, named by field.
    let not_utf8 = [0x0a, 0x02, 0xff, 0xfe];
    let status = call_frames(&channel, login, frame(false, 4, &not_utf8)).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(&status), "MALFORMED_REQUEST");
    let violations = status
        .get_details_bad_request()
        .expect("bad request")
        .field_violations;
    assert_eq!(violations[0].field, "username");

    // Not protobuf at all.
    let status = call_frames(&channel, login, frame(false, 3, &[0xff, 0xff, 0xff])).await;
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(reason(&status), "MALFORMED_REQUEST");

    // The same through a client library, on a protected method: authentication runs first.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    grpc.ready().await.expect("ready");
    let no_token = grpc
        .unary(
            Request::new(vec![0xff, 0xff, 0xff]),
            "/streambank.v1.AccountService/GetAccount"
                .parse()
                .expect("path"),
            RawCodec,
        )
        .await
        .expect_err("no token");
    assert_eq!(no_token.code(), Code::Unauthenticated);

    // No message at all on a unary method: a cardinality violation.
    let status = call_frames(&channel, login, Vec::new()).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(reason(&status), "REQUEST_CARDINALITY");

    // Broken frames are protocol violations: Internal, as the gRPC documents require, but with a
    // reason that says so and tonic's description, never a generic "internal error".
    for (what, body) in [
        (
            "a stream that ends inside a frame",
            frame(false, 100, b"abc"),
        ),
        (
            "a compressed flag without grpc-encoding",
            frame(true, 2, &[0x08, 0x01]),
        ),
    ] {
        let status = call_frames(&channel, login, body).await;
        assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
        assert_eq!(reason(&status), "PROTOCOL_ERROR", "{what}");
        assert!(!status.message().is_empty(), "{what}");
    }

    // Over the size limit (4 MiB, tonic's default): the document's RESOURCE_EXHAUSTED.
    let large = vec![0u8; 4 * 1024 * 1024 + 1];
    let status = call_frames(
        &channel,
        login,
        frame(false, u32::try_from(large.len()).expect("fits"), &large),
    )
    .await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "MESSAGE_TOO_LARGE");

    // A path that names no method.
    let status = call_frames(&channel, "/nowhere.v1.Nothing/Nope", frame(false, 0, &[])).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(reason(&status), "METHOD_NOT_FOUND");

    // A compression the server does not take.
    let request = axum::http::Request::post(login)
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-encoding", "br")
        .body(tonic::body::Body::new(axum::body::Body::from(frame(
            true,
            0,
            &[],
        ))))
        .expect("request");
    {
        use tower::ServiceExt as _;
        let response = channel.clone().oneshot(request).await.expect("an answer");
        assert!(response.headers().contains_key("grpc-accept-encoding"));
        let status = Status::from_header_map(response.headers()).expect("trailers-only");
        assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
        assert_eq!(reason(&status), "COMPRESSION_UNSUPPORTED");
    }

    // The server still serves.
    registration_still_works(channel).await;
}

#[tokio::test]
async fn a_long_bogus_token_is_unauthenticated_not_an_http2_refusal() {
    let app = TestApp::spawn("paseto").await;
    let mut accounts = AccountServiceClient::new(channel(&app).await);
    // Longer than hyper's default header list (16 KiB), shorter than the server's limit.
    let status = accounts
        .get_account(authed(
            pb::GetAccountRequest { id: 1 },
            &"x".repeat(20 * 1024),
        ))
        .await
        .expect_err("a bogus token");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert_eq!(reason(&status), "TOKEN_INVALID");
}

/// A service whose only method takes two seconds to answer (with an empty body).
#[derive(Debug, Clone, Copy)]
struct Sleeps;

impl tonic::server::NamedService for Sleeps {
    const NAME: &'static str = "streambank.test.Sleeps";
}

impl tower::Service<axum::http::Request<tonic::body::Body>> for Sleeps {
    type Response = axum::http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>,
    >;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: axum::http::Request<tonic::body::Body>) -> Self::Future {
        Box::pin(async {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            Ok(Status::ok("").into_http())
        })
    }
}

#[tokio::test]
async fn the_servers_time_limit_is_unavailable_and_the_callers_deadline_is_deadline_exceeded() {
    let app = TestApp::spawn_customized(&[("REQUEST_TIMEOUT", "300ms")], |api| {
        api.add_grpc_service(Sleeps)
    })
    .await;
    let channel = channel(&app).await;

    let started = std::time::Instant::now();
    let status = call_raw(&channel, "/streambank.test.Sleeps/Nap", None)
        .await
        .expect_err("the server's limit");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert_eq!(reason(&status), "TIMEOUT");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(
        status.metadata().get("x-request-id").is_some(),
        "the answer still carries its request id"
    );

    // The caller's deadline, sooner than the server's limit. Sent over a bare HTTP/2 connection: a
    // tonic client would enforce the same deadline itself and report its own `Cancelled` first.
    let tcp = tokio::net::TcpStream::connect(app.grpc_addr)
        .await
        .expect("connect");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let request = axum::http::Request::post(format!(
        "http://{}/streambank.test.Sleeps/Nap",
        app.grpc_addr
    ))
    .header("content-type", "application/grpc")
    .header("te", "trailers")
    .header("grpc-timeout", "100m")
    .body(axum::body::Body::from(vec![0u8; 5]))
    .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    let status = Status::from_header_map(response.headers()).expect("trailers-only");
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(reason(&status), "DEADLINE_EXCEEDED");

    // Both were counted, by code.
    let metrics = app.metrics().await;
    for code in ["Unavailable", "DeadlineExceeded"] {
        assert!(
            metrics.contains(&format!(
                "grpc_requests_total{{method=\"unknown\",code=\"{code}\"}} 1\n"
            )),
            "{code} not counted:\n{metrics}"
        );
    }
}
