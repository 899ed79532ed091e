//! `/healthz`, `/readyz` and `/metrics` for the background processes (relay, worker) on `HEALTH_ADDR`.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::shutdown::CancellationToken;

/// How long one dependency may take to answer a readiness check before it counts as unavailable.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// A readiness report built one dependency at a time; every check is bounded by [`CHECK_TIMEOUT`].
///
/// ```ignore
/// Readiness::default()
///     .check("postgres", bank.ping()).await
///     .check("redis", bus.ping()).await
///     .detail("role", "leader")
///     .report()
/// ```
#[derive(Debug, Default)]
pub struct Readiness {
    details: serde_json::Map<String, Value>,
    ready: bool,
    checked: bool,
}

impl Readiness {
    /// Runs one check: `"ok"` when it succeeds in time, `"unavailable"` when it fails or times out.
    pub async fn check<T, E>(
        mut self,
        name: &str,
        check: impl Future<Output = Result<T, E>>,
    ) -> Self {
        let ok = tokio::time::timeout(CHECK_TIMEOUT, check)
            .await
            .is_ok_and(|r| r.is_ok());
        self.ready = ok && (self.ready || !self.checked);
        self.checked = true;
        self.details.insert(
            name.to_owned(),
            Value::from(if ok { "ok" } else { "unavailable" }),
        );
        self
    }

    /// Adds a detail that does not decide readiness (a role, a consumer name).
    pub fn detail(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.details.insert(name.to_owned(), value.into());
        self
    }

    /// `Ok(details)` when every check passed, `Err(details)` otherwise.
    pub fn report(self) -> Result<Value, Value> {
        let details = Value::Object(self.details);
        if self.ready || !self.checked {
            Ok(details)
        } else {
            Err(details)
        }
    }

    /// The report as an HTTP answer: 200 when ready, 503 when not.
    pub fn answer(self) -> (StatusCode, Json<Value>) {
        match self.report() {
            Ok(details) => (StatusCode::OK, Json(details)),
            Err(details) => (StatusCode::SERVICE_UNAVAILABLE, Json(details)),
        }
    }
}

/// Binds `addr` (`HEALTH_ADDR`) and serves the health endpoints of `process` until `stop` is
/// cancelled: `/readyz` answers what `ready(process)` reports (`Ok(details)` when ready, `Err(details)`
/// when not), `/metrics` renders `metrics`. Returns the bound address (port 0 picks one) and the
/// serving task; an address that cannot be bound is an error that names `HEALTH_ADDR`.
pub async fn serve<P, F, Fut>(
    addr: SocketAddr,
    process: P,
    ready: F,
    metrics: crate::metrics::Shared,
    stop: &CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    P: Clone + Send + Sync + 'static,
    F: Fn(P) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, Value>> + Send + 'static,
{
    let unbound = |e: std::io::Error| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on HEALTH_ADDR {addr}: {e}"),
        )
    };
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(unbound)?;
    let addr = listener.local_addr().map_err(unbound)?;
    tracing::info!(%addr, "health endpoints listening");
    let router = Router::new()
        .route("/metrics", crate::metrics::endpoint(metrics))
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({ "status": "ok" })) }),
        )
        .route(
            "/readyz",
            get(move || {
                let report = ready(process.clone());
                async move {
                    match report.await {
                        Ok(details) => (StatusCode::OK, Json(details)),
                        Err(details) => (StatusCode::SERVICE_UNAVAILABLE, Json(details)),
                    }
                }
            }),
        );
    let shutdown = stop.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "health server failed");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readiness_is_every_check_in_time() {
        let ok = || async { Ok::<(), ()>(()) };
        let ready = Readiness::default()
            .check("a", ok())
            .await
            .detail("role", "leader")
            .report();
        assert_eq!(
            ready,
            Ok(serde_json::json!({ "a": "ok", "role": "leader" }))
        );

        let failed = Readiness::default()
            .check("a", ok())
            .await
            .check("b", async { Err::<(), ()>(()) })
            .await
            .report();
        assert_eq!(
            failed,
            Err(serde_json::json!({ "a": "ok", "b": "unavailable" }))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_check_that_hangs_is_unavailable_after_the_timeout() {
        let hung = Readiness::default()
            .check("slow", std::future::pending::<Result<(), ()>>())
            .await
            .report();
        assert_eq!(hung, Err(serde_json::json!({ "slow": "unavailable" })));
    }
}
