//! Logging and tracing shared by every StreamBank process.
//!
//! # Layout
//!
//! - [`init_logging`] and [`init`]: the `tracing` subscriber (`RUST_LOG` filter, `LOG_FORMAT` pretty or
//!   json), and with [`init`] OTLP export of spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`continue_trace`] and [`traceparent_of`]: W3C trace context in and out of spans, so a trace
//!   follows an event from the API through the outbox and the stream to the worker.
//! - [`current_traceparent`]: the W3C `traceparent` of the current span, which the store writes into each
//!   outbox row so that the relay and the workers continue the trace of the request that caused an event.
//! - [`spawn_blocking_in_span`]: CPU-heavy work (argon2) off the async runtime, inside the caller's span.
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` for the relay and the worker.
//! - [`metrics`]: Prometheus counters, gauges and histograms.
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C, the normal way every process is asked to stop.

pub mod health;
pub mod metrics;
pub mod shutdown;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Installs the process-wide `tracing` subscriber: `RUST_LOG` (else `default_filter`, e.g. `info`) chooses
/// what is logged and `LOG_FORMAT=json` switches from human-readable lines to one JSON object per line.
/// Safe to call twice; the second call does nothing. No spans are exported (see [`init`]).
pub fn init_logging(default_filter: &str) {
    let _ = subscriber(default_filter, None).try_init();
}

/// Logging as [`init_logging`], plus OpenTelemetry: when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans go
/// to it over OTLP/gRPC (Jaeger listens on 4317) as service `OTEL_SERVICE_NAME` (else `service`). Keep
/// the returned guard until exit: dropping it flushes the last spans.
pub fn init(service: &str, default_filter: &str) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok().filter(|e| !e.is_empty()).and_then(|endpoint| {
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_endpoint(endpoint).build();
        match exporter {
            Ok(exporter) => {
                let name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| service.to_owned());
                let resource = opentelemetry_sdk::Resource::builder().with_service_name(name).build();
                Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
            }
            Err(e) => {
                eprintln!("{service}: OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter ({e}); spans are not exported");
                None
            }
        }
    });
    let tracer = provider.as_ref().map(|p| p.tracer(service.to_owned()));
    let _ = subscriber(default_filter, tracer).try_init();
    TelemetryGuard(provider)
}

/// Flushes and shuts the span exporter down when dropped.
#[derive(Debug)]
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The subscriber every process uses; `tracer`, when given, turns spans into OpenTelemetry spans.
pub fn subscriber(
    default_filter: &str,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
) -> impl tracing::Subscriber + Send + Sync {
    let filter = filter(
        &std::env::var("RUST_LOG")
            .ok()
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| default_filter.to_owned()),
    );
    let json = std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let fmt: BoxedLayer = if json {
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .with_writer(std::io::stderr),
        )
    } else {
        Box::new(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
    };
    let mut layers = vec![fmt];
    if let Some(tracer) = tracer {
        layers.push(Box::new(tracing_opentelemetry::layer().with_tracer(tracer)));
    }
    tracing_subscriber::registry().with(layers).with(filter)
}

/// Dependencies whose debug and trace events print what a request carries (HTTP/2 frames with their
/// `:path` and headers, HTTP/1 heads, SMTP transcripts with the verification link): capped at `info`
/// whatever `RUST_LOG` asks for in general, so that no token, password or code reaches a log at any
/// level. Naming one of them in `RUST_LOG` (`RUST_LOG=info,h2=trace`) lifts its cap, deliberately.
pub const CAPPED_TARGETS: &[&str] = &[
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower",
    "tower_http",
    "reqwest",
    "lettre",
];

/// The filter `directives` (`RUST_LOG` syntax) make, with [`CAPPED_TARGETS`] capped at `info` unless
/// the directives name them. Unparsable directives are skipped, as `EnvFilter` does.
pub fn filter(directives: &str) -> EnvFilter {
    let mut filter = EnvFilter::builder().parse_lossy(directives);
    let named: Vec<&str> = directives
        .split(',')
        .filter_map(|d| d.split(['=', '[']).next())
        .map(|t| t.split("::").next().unwrap_or(t).trim())
        .collect();
    for target in CAPPED_TARGETS {
        if !named.contains(target)
            && let Ok(directive) = format!("{target}=info").parse()
        {
            filter = filter.add_directive(directive);
        }
    }
    filter
}

/// Makes `span` continue the trace of a W3C `traceparent` (from an outbox row or a stream entry). An
/// empty or malformed value leaves the span as it is.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

/// Links `span` to `other` (OpenTelemetry span links): for work done once on behalf of several traces,
/// such as one statement written for many events.
pub fn add_link(span: &tracing::Span, other: &tracing::Span) {
    let context = other.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    if span_context.is_valid() {
        span.add_link(span_context.clone());
    }
}

/// The W3C `traceparent` of `span`, or `None` when it is not part of an OpenTelemetry trace.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// The W3C `traceparent` (`00-<trace id>-<span id>-<flags>`) of the current span, or `None` when the
/// span is not part of an OpenTelemetry trace (no exporter configured, or outside any span).
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
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
