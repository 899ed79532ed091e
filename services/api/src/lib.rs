//! `streambank-api`: the REST listener (axum) over StreamBank's service layer.
//!
//! `main.rs` is thin: it reads [`Config`], starts logging and calls [`Api::bind`] then [`Api::run`].
//! Tests do the same on port 0 and talk to the server over a real socket.
//!
//! # Layout
//!
//! - [`config`]: environment variables, checked at start.
//! - [`state`]: what handlers share (the service layer, sessions, Redis for readiness).
//! - [`rest`]: the router, one module per resource, the error shape and the extractors.

pub mod config;
pub mod rest;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use streambank_service::{Bank, Sessions};
use tokio::net::TcpListener;

pub use config::Config;
use state::AppState;

/// A bound, not yet serving, API process.
#[derive(Debug)]
pub struct Api {
    http: TcpListener,
    router: axum::Router,
    sessions: Sessions,
}

impl Api {
    /// Connects to Postgres (lazily: the process starts, and reports not ready, while the database is
    /// down), builds the service layer and binds the listeners.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let options: PgConnectOptions = config.database_url.parse().context("DATABASE_URL")?;
        let pool = streambank_store::pool_options(config.database_max_connections)
            .connect_lazy_with(options);
        let tokens = streambank_auth::maker(&config.token_kind, &config.token_key)
            .map_err(|e| anyhow::anyhow!("TOKEN_SYMMETRIC_KEY {e}"))?;
        let sessions = Sessions::new(
            pool.clone(),
            Arc::clone(&tokens),
            config.access_token_ttl,
            config.refresh_token_ttl,
        )
        .await?;
        tokio::spawn(sessions.clone().listen_for_invalidations());
        tokio::spawn(expire_idempotency_keys(Bank::new(pool.clone())));
        let state = AppState {
            bank: Bank::new(pool),
            sessions: sessions.clone(),
            redis: redis::Client::open(config.redis_url.as_str()).context("REDIS_URL")?,
            trusted_proxies: config.trusted_proxies.clone(),
            body_limit_bytes: config.body_limit_bytes,
            metrics: rest::metrics::ApiMetrics::default(),
        };
        let router = rest::router(state, config);
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
        Ok(Self {
            http,
            router,
            sessions,
        })
    }

    /// The process's sessions (tests watch whether the session cache is live).
    pub fn sessions(&self) -> Sessions {
        self.sessions.clone()
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish, and returns.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let service = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.http, service)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

pub use streambank_telemetry::shutdown_signal;

/// Deletes idempotency keys past their retention, hourly, for the life of the process.
async fn expire_idempotency_keys(bank: Bank) {
    let mut every_hour = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        every_hour.tick().await;
        match bank.expire_idempotency_keys().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "expired idempotency keys"),
            Err(e) => tracing::warn!(error = %e, "could not expire idempotency keys"),
        }
    }
}
