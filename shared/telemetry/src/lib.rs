//! Logging and tracing shared by every StreamBank process.
//!
//! # Layout
//!
//! - [`init_logging`]: the `tracing` subscriber (`RUST_LOG` filter, `LOG_FORMAT` pretty or json).
//! - [`current_traceparent`]: the W3C `traceparent` of the current span, which the store writes into each
//!   outbox row so that the relay and the workers continue the trace of the request that caused an event.
//! - [`spawn_blocking_in_span`]: CPU-heavy work (argon2) off the async runtime, inside the caller's span.
//! - [`health`]: `/healthz` and `/readyz` for the relay and the worker.
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C, the normal way every process is asked to stop.

pub mod health;

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::EnvFilter;

/// Installs the process-wide `tracing` subscriber: `RUST_LOG` (else `default_filter`, e.g. `info`) chooses
/// what is logged and `LOG_FORMAT=json` switches from human-readable lines to one JSON object per line.
/// Safe to call twice; the second call does nothing.
pub fn init_logging(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) of the current span, or `None` when the
/// span is not part of an OpenTelemetry trace (no exporter configured, or outside any span).
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Runs blocking work (password hashing) on tokio's blocking pool, inside the current span so that its
/// logs and timing stay attached to the request that asked for it.
pub fn spawn_blocking_in_span<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(work))
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight work");
}
