//! `streambank-api`: StreamBank's three transports over one service layer: the REST listener (axum,
//! `HTTP_ADDR`), the gRPC server (tonic, `GRPC_ADDR`) and the HTTP/JSON gateway (`GATEWAY_ADDR`), which
//! transcodes to gRPC and calls `GATEWAY_UPSTREAM` over a real connection; and `/metrics` on a listener
//! of its own (`METRICS_ADDR`), for the scraper only.
//!
//! `main.rs` is thin: it reads [`Config`], starts logging and calls [`Api::bind`] then [`Api::run`].
//! Tests do the same on port 0 and talk to the server over real sockets.
//!
//! # Layout
//!
//! - [`config`]: environment variables, checked at start.
//! - [`conn`]: what every listener bounds: open connections (in all and per client), idle time,
//!   the time to send a head, the time a write may stall.
//! - [`state`]: what handlers share (the service layer, sessions, Redis for readiness).
//! - [`contract`]: what the three listeners share, so that none imports another: the error body and
//!   its HTTP mapping, transport-level reasons, the HTTP layers of REST and the gateway, the client's
//!   address, metrics, the landing page.
//! - [`rest`]: the router, one module per resource, REST's error enum and the extractors.
//! - [`grpc`]: the four gRPC services, one module each, and the layers every call passes through
//!   (authentication, request id, tracing, panic recovery, rate limits).
//! - [`shared_writes`]: the callers' last writes in Redis, so that every api process sends a caller's
//!   lists to the replica only once it holds the caller's writes.
//! - [`gateway`]: the `streambank-gateway` transcoder wired to the contract (error body, public
//!   methods, HTTP layers), and its OpenAPI document.

pub mod config;
pub mod conn;
pub mod contract;
pub mod gateway;
pub mod grpc;
pub mod rest;
pub mod shared_writes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use streambank_service::{Bank, ReplicaOptions, Sessions};
use tokio::net::TcpListener;

pub use config::Config;
use state::AppState;

/// A bound, not yet serving, API process.
#[derive(Debug)]
pub struct Api {
    connections: conn::ConnectionLimits,
    /// Exempt from the per-client connection cap (`TRUSTED_PROXIES`).
    trusted_proxies: Vec<std::net::IpAddr>,
    http: TcpListener,
    router: axum::Router,
    grpc: TcpListener,
    grpc_server: grpc::Grpc,
    grpc_routes: tonic::service::Routes,
    gateway: TcpListener,
    gateway_router: axum::Router,
    metrics: TcpListener,
    metrics_router: axum::Router,
    sessions: Sessions,
}

impl Api {
    /// Connects to Postgres (lazily: the process starts, and reports not ready, while the database is
    /// down), and to the read replica if `DATABASE_READ_URL` names one (lazily too; while it is down,
    /// lists read the primary), builds the service layer and binds the listeners.
    pub async fn bind(config: &Config) -> anyhow::Result<Self> {
        let options: PgConnectOptions = config.database.url.parse().context("DATABASE_URL")?;
        let pool = streambank_store::pool_options(config.database_max_connections)
            .connect_lazy_with(options);
        let tokens = streambank_auth::maker(config.token_kind, &config.token_key())
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
        let redis =
            streambank_bus::Bus::open(&config.redis.url).context("REDIS_URL is not a Redis URL")?;
        let mut bank = Bank::new(pool);
        if let Some(url) = &config.database_read_url {
            let options: PgConnectOptions = url.parse().context("DATABASE_READ_URL")?;
            let replica = streambank_store::pool_options(config.database_max_connections)
                .acquire_timeout(streambank_service::replica::ACQUIRE_TIMEOUT)
                .connect_lazy_with(options);
            let options = ReplicaOptions {
                max_wait: config.database_read_max_wait,
            };
            let shared = shared_writes::RedisWrites::new(redis.clone());
            bank = bank
                .with_read_replica(replica, options)
                .with_shared_writes(Arc::new(shared));
        }
        let state = AppState {
            metrics: contract::metrics::ApiMetrics::new(&bank),
            bank,
            sessions: sessions.clone(),
            redis,
            trusted_proxies: config.trusted_proxies.clone(),
            body_limit_bytes: config.body_limit_bytes,
            auth_limiter: state::AuthRateLimiter::new(config.auth_rate_limit_per_minute),
        };
        let metrics_router = contract::metrics::router(state.metrics.clone());
        let grpc_server = grpc::Grpc::new(state.clone(), config);
        let grpc_routes = grpc_server
            .routes()
            .await
            .context("building the gRPC services")?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("cannot listen on HTTP_ADDR {}", config.http_addr))?;
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("cannot listen on GRPC_ADDR {}", config.grpc_addr))?;
        let gateway = TcpListener::bind(config.gateway_addr)
            .await
            .with_context(|| format!("cannot listen on GATEWAY_ADDR {}", config.gateway_addr))?;
        let metrics = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("cannot listen on METRICS_ADDR {}", config.metrics_addr))?;
        let landing = contract::landing::Landing::new(
            config,
            [&http, &gateway, &grpc, &metrics].map(|l| l.local_addr().map_or(0, |a| a.port())),
        );
        let router = rest::router(state, config, landing.clone());
        let upstream = match &config.gateway_upstream {
            Some(url) => url.clone(),
            // This process's own gRPC listener, over loopback when it listens on every address.
            None => {
                let mut addr = grpc.local_addr()?;
                if addr.ip().is_unspecified() {
                    addr.set_ip(if addr.is_ipv4() {
                        std::net::Ipv4Addr::LOCALHOST.into()
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    });
                }
                format!("http://{addr}")
            }
        };
        let channel = grpc_server
            .gateway_channel(&upstream)
            .context("GATEWAY_UPSTREAM")?;
        let gateway_router = gateway::router_with_landing(
            &streambank_proto::descriptor_pool(),
            channel,
            gateway::GatewayOptions::from(config),
            landing,
        )
        .context("building the gateway from the descriptor set")?;
        Ok(Self {
            connections: config.connections(),
            trusted_proxies: config.trusted_proxies.clone(),
            http,
            router,
            grpc,
            grpc_server,
            grpc_routes,
            gateway,
            gateway_router,
            metrics,
            metrics_router,
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

    /// Adds a gRPC service behind the same layers as the API's own (tests use it to check what the
    /// layers do with a method that panics).
    pub fn add_grpc_service<S>(&mut self, service: S)
    where
        S: tower::Service<
                axum::http::Request<tonic::body::Body>,
                Response = axum::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        let routes = std::mem::take(&mut self.grpc_routes);
        self.grpc_routes = routes.add_service(service);
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    pub fn gateway_addr(&self) -> std::io::Result<SocketAddr> {
        self.gateway.local_addr()
    }

    pub fn metrics_addr(&self) -> std::io::Result<SocketAddr> {
        self.metrics.local_addr()
    }

    /// Serves all four listeners until `shutdown` completes; then each stops accepting, lets its
    /// in-flight requests finish, and `run` returns when all have.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = streambank_telemetry::shutdown::stop_token(shutdown);
        let signal = move || stop.clone().cancelled_owned();

        let limited = |listener, name| {
            conn::LimitedListener::new(listener, self.connections, name)
                .exempting(&self.trusted_proxies)
        };
        let rest = conn::serve_http(limited(self.http, "rest"), self.router, signal());
        let gateway = conn::serve_http(
            limited(self.gateway, "gateway"),
            self.gateway_router,
            signal(),
        );
        let metrics = conn::serve_http(
            limited(self.metrics, "metrics"),
            self.metrics_router,
            signal(),
        );
        let grpc = self.grpc_server.serve(
            limited(self.grpc, "grpc").incoming(),
            self.grpc_routes,
            signal(),
        );
        let (rest, gateway, grpc, metrics) = tokio::join!(rest, gateway, grpc, metrics);
        rest.context("REST listener")?;
        gateway.context("gateway listener")?;
        grpc.context("gRPC listener")?;
        metrics.context("metrics listener")?;
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
