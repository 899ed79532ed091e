//! `/healthz`, `/readyz` and `/metrics` for the background processes (relay, worker) on `HEALTH_ADDR`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

/// Reports readiness: `Ok(details)` when ready, `Err(details)` when not.
pub type ReadinessCheck =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Value, Value>> + Send>> + Send + Sync>;

/// Binds `addr` and serves the health endpoints until `shutdown` completes. Returns the bound address
/// (port 0 picks one) and the serving task.
pub async fn serve(
    addr: SocketAddr,
    ready: ReadinessCheck,
    metrics: crate::metrics::Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(move || async move { metrics.render() }))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    match ready().await {
                        Ok(details) => (StatusCode::OK, Json(details)),
                        Err(details) => (StatusCode::SERVICE_UNAVAILABLE, Json(details)),
                    }
                }
            }),
        );
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "health server failed");
        }
    });
    Ok((bound, task))
}
