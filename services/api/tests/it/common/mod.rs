//! A real `streambank-api` on port 0 over a fresh database, and a typed way to talk to it.

use std::collections::HashMap;

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;
use streambank_api::{Api, Config};
use streambank_service::Bank;
use streambank_service::verification::NewVerification;
pub use streambank_testkit::fixtures::PASSWORD;
use streambank_testkit::rest;
pub use streambank_testkit::rest::Session;
use streambank_testkit::{TestDb, fixtures};
use tokio::sync::oneshot;

/// The token key the test servers use, so tests can forge tokens with it (and with others).
pub const TEST_KEY: &str = "test-key-0123456789-abcdefghijkl";

/// Which listener a contract test talks to: REST, or the gateway (which transcodes to gRPC). The two
/// serve the same paths, shapes and errors, so the same test runs against either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Rest,
    Gateway,
}

/// Runs a contract test once against each transport: `over_both_transports!(name, test_fn)` makes
/// `name::rest` and `name::gateway`, each calling `test_fn(Transport::..)`.
macro_rules! over_both_transports {
    ($name:ident, $test:path) => {
        mod $name {
            #[tokio::test]
            async fn rest() {
                $test($crate::common::Transport::Rest).await
            }
            #[tokio::test]
            async fn gateway() {
                $test($crate::common::Transport::Gateway).await
            }
        }
    };
}

/// The settings every test API runs with: `database_url`, every listener on port 0, the test key, a
/// rate limit no test reaches, and `connections` database connections.
pub fn api_env(database_url: &str, connections: u32) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".into(), database_url.to_owned()),
        ("HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ("GRPC_ADDR".into(), "127.0.0.1:0".into()),
        ("GATEWAY_ADDR".into(), "127.0.0.1:0".into()),
        ("METRICS_ADDR".into(), "127.0.0.1:0".into()),
        ("TOKEN_SYMMETRIC_KEY".into(), TEST_KEY.into()),
        ("AUTH_RATE_LIMIT_PER_MINUTE".into(), "100000".into()),
        ("DATABASE_MAX_CONNECTIONS".into(), connections.to_string()),
    ])
}

pub struct TestApp {
    /// The listener the test talks to (REST unless spawned for the gateway).
    pub base: String,
    pub rest_base: String,
    pub gateway_base: String,
    /// The metrics listener (`METRICS_ADDR`).
    pub metrics_base: String,
    pub grpc_addr: std::net::SocketAddr,
    pub config: Config,
    pub sessions: streambank_service::Sessions,
    pub db: TestDb,
    pub bank: Bank,
    pub client: Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(token_kind: &str) -> Self {
        Self::spawn_with(&[("TOKEN_KIND", token_kind)]).await
    }

    /// The API with the given token format, the test talking to `transport`.
    pub async fn spawn_on(transport: Transport, token_kind: &str) -> Self {
        let mut app = Self::spawn(token_kind).await;
        if transport == Transport::Gateway {
            app.base = app.gateway_base.clone();
        }
        app
    }

    /// Starts the API with the test defaults overridden by `vars`.
    pub async fn spawn_with(vars: &[(&str, &str)]) -> Self {
        Self::spawn_customized(vars, |_| {}).await
    }

    /// Starts the API after `customize` has had the bound process (to add a gRPC service, say).
    pub async fn spawn_customized(vars: &[(&str, &str)], customize: impl FnOnce(&mut Api)) -> Self {
        let db = TestDb::new().await;
        let mut env = api_env(&db.url, 16);
        if let Ok(redis) = std::env::var("REDIS_URL") {
            env.insert("REDIS_URL".into(), redis);
        }
        for (k, v) in vars {
            env.insert((*k).into(), (*v).into());
        }
        let config = Config::from_lookup(&move |name| env.get(name).cloned()).expect("test config");
        let mut api = Api::bind(&config).await.expect("bind the API");
        customize(&mut api);
        let sessions = api.sessions();
        let base = format!("http://{}", api.http_addr().expect("address"));
        let gateway_base = format!("http://{}", api.gateway_addr().expect("address"));
        let metrics_base = format!("http://{}", api.metrics_addr().expect("address"));
        let grpc_addr = api.grpc_addr().expect("address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(api.run(async {
            let _ = stopped.await;
        }));
        let bank = Bank::new(db.pool.clone());
        Self {
            rest_base: base.clone(),
            base,
            gateway_base,
            metrics_base,
            grpc_addr,
            config,
            sessions,
            bank,
            db,
            client: Client::new(),
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// A second API process on the same database (as another replica would be); returns its base URL
    /// and its sessions. It serves until the test ends.
    pub async fn peer(&self) -> (String, streambank_service::Sessions) {
        let api = Api::bind(&self.config).await.expect("bind a peer");
        let base = format!("http://{}", api.http_addr().expect("address"));
        let sessions = api.sessions();
        tokio::spawn(api.run(std::future::pending()));
        (base, sessions)
    }

    /// Stops accepting, waits for in-flight requests, and returns what `run` returned.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.server
            .take()
            .expect("server")
            .await
            .expect("server task")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request reaches the server")
    }

    pub async fn get(&self, path: &str, token: &str) -> Response {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Response {
        self.call(Method::POST, path, Some(token), Some(body)).await
    }

    /// The text of `/metrics`, from the metrics listener.
    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(format!("{}/metrics", self.metrics_base))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("metrics text")
    }

    /// Registers `<username>@example.com` over the listener under test and returns the user's id.
    pub async fn register(&self, username: &str) -> i64 {
        let email = format!("{username}@example.com");
        rest::register(&self.client, &self.base, username, &email).await
    }

    /// Logs in over the listener under test.
    pub async fn login(&self, username: &str) -> Session {
        rest::login(&self.client, &self.base, username).await
    }

    /// A new verification of `email` for `user_id`: what the worker makes for the email it sends
    /// (here the service layer makes it, with no worker running).
    pub async fn verification(&self, user_id: i64, email: &str) -> NewVerification {
        self.bank
            .create_email_verification(user_id, email, uuid::Uuid::now_v7())
            .await
            .expect("create")
            .expect("new")
    }

    /// A verified customer, logged in.
    pub async fn customer(&self, username: &str) -> Session {
        let id = self.register(username).await;
        self.bank.mark_email_verified(id).await.expect("verify");
        self.login(username).await
    }

    /// A verified banker (made the operator's way), logged in.
    pub async fn banker(&self, username: &str) -> Session {
        fixtures::banker(&self.bank, username).await;
        self.login(username).await
    }

    /// Opens an account over the listener under test and returns its id.
    pub async fn open_account(&self, session: &Session, currency: &str) -> i64 {
        rest::open_account(&self.client, &self.base, &session.access, currency).await
    }

    pub async fn deposit(&self, banker: &Session, account_id: i64, amount: i64, currency: &str) {
        rest::deposit(
            &self.client,
            &self.base,
            &banker.access,
            account_id,
            amount,
            currency,
        )
        .await;
    }
}

/// The path of the link in a verification email.
pub fn verify_link(verification: &NewVerification) -> String {
    format!(
        "/v1/users/verify-email?id={}&code={}",
        verification.id, verification.code
    )
}

/// Checks the contract's error shape and returns the body.
pub async fn expect_error(
    response: Response,
    status: StatusCode,
    code: &str,
    reason: &str,
) -> Value {
    let got = response.status();
    let body: Value = response.json().await.expect("an error body in JSON");
    assert_eq!(got, status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert_eq!(body["error"]["reason"], reason, "body: {body}");
    assert!(body["error"]["message"].is_string(), "body: {body}");
    assert!(body["error"]["details"].is_object(), "body: {body}");
    body
}
