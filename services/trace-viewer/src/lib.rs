//! A trace viewer for the development path without containers: an in-memory OpenTelemetry collector
//! (OTLP over gRPC, where Jaeger listens: 4317) with Jaeger's web UI and its query API (`/api/services`,
//! `/api/traces?service=..&limit=..`, `/api/traces/{id}`) on 16686, so that `scripts/dev.sh` shows the
//! trace of a request across the API, the relay and the worker the way Jaeger would.
//!
//! The collector, the query API and the UI's files come from the `otlp-embedded` crate (Jaeger UI 2.14.1,
//! bundled in the crate, so nothing is downloaded). It keeps the most recent traces in memory only:
//! this is a development tool, not a trace store.
//!
//! # Layout
//!
//! - [`Config`]: the two listeners and the memory cap, from the environment.
//! - [`run`]: serves both on listeners bound by the caller until `shutdown` completes.

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;

/// Where the viewer listens and how much it keeps.
#[derive(Debug, Clone)]
pub struct Config {
    /// Jaeger's UI and query API (`TRACE_UI_ADDR`, default `127.0.0.1:16686`).
    pub ui_addr: SocketAddr,
    /// OTLP over gRPC (`OTLP_GRPC_ADDR`, default `127.0.0.1:4317`).
    pub otlp_addr: SocketAddr,
    /// How many traces are kept before the oldest are dropped (`TRACE_VIEWER_MAX_TRACES`, default 20000:
    /// the relay's drain loop alone starts several small traces a second, so a few minutes' worth).
    pub max_traces: u32,
}

impl Config {
    /// Reads the configuration; a value that does not parse is an error naming the variable.
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str, default: &str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        Ok(Self {
            ui_addr: var("TRACE_UI_ADDR", "127.0.0.1:16686")
                .parse()
                .context("TRACE_UI_ADDR must be an address such as 127.0.0.1:16686")?,
            otlp_addr: var("OTLP_GRPC_ADDR", "127.0.0.1:4317")
                .parse()
                .context("OTLP_GRPC_ADDR must be an address such as 127.0.0.1:4317")?,
            max_traces: var("TRACE_VIEWER_MAX_TRACES", "20000")
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .context("TRACE_VIEWER_MAX_TRACES must be a positive whole number")?,
        })
    }
}

/// Serves Jaeger's UI and query API on `ui` and the OTLP/gRPC collector on `otlp` until `shutdown`
/// completes. Spans sent to `otlp` are visible through `ui` as soon as their batch arrives.
pub async fn run(
    ui: tokio::net::TcpListener,
    otlp: tokio::net::TcpListener,
    max_traces: u32,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = otlp_embedded::State::new(otlp_embedded::Config {
        max_length: max_traces,
        // Bounded by the number of traces only. otlp-embedded 0.0.2's memory estimate drifts upward
        // under the dev stack's traffic; once it passes its cap every new trace is evicted at once and
        // the query API answers nothing (seen after three minutes of `scripts/dev.sh` in release).
        max_memory_usage: usize::MAX,
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let ui_server = axum::serve(ui, otlp_embedded::ui_app(state.clone(), "/"))
        .with_graceful_shutdown(wait(stopped.clone()));
    let collector = tonic::transport::Server::builder()
        .add_service(otlp_embedded::TraceServiceServer::new(
            otlp_embedded::TraceServiceImpl::new(state),
        ))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(otlp),
            wait(stopped),
        );
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let (ui_result, collector_result) = tokio::join!(ui_server, collector);
    ui_result.context("the UI listener failed")?;
    collector_result.context("the OTLP listener failed")?;
    Ok(())
}
