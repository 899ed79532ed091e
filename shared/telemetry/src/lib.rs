//! Logging and tracing shared by every StreamBank process.
//!
//! # Layout
//!
//! - [`init_logging`] and [`init`]: the `tracing` subscriber (`RUST_LOG` filter, `LOG_FORMAT` pretty or
//!   json), and with [`init`] OTLP export of spans when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - `logfmt`: the line format, with the trace id of the current span ([`current_trace_id`]); colours
//!   only when stderr is a terminal.
//! - [`continue_trace`] and [`traceparent_of`]: W3C trace context in and out of spans, so a trace
//!   follows an event from the API through the outbox and the stream to the worker.
//! - [`current_traceparent`]: the W3C `traceparent` of the current span, which the store writes into each
//!   outbox row so that the relay and the workers continue the trace of the request that caused an event.
//! - [`spawn_blocking_in_span`]: CPU-heavy work (argon2) off the async runtime, inside the caller's span.
//! - [`health`]: `/healthz`, `/readyz` and `/metrics` for the relay and the worker.
//! - [`metrics`]: Prometheus counters, gauges and histograms.
//! - [`shutdown_signal`]: SIGTERM or Ctrl-C, the normal way every process is asked to stop.

pub mod health;
mod logfmt;
pub mod metrics;
pub mod shutdown;

pub use logfmt::current_trace_id;

use std::io::IsTerminal as _;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use streambank_config::{LogFormat, Telemetry};
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

/// Logging as the process's [`Telemetry`] settings say (`RUST_LOG`, `LOG_FORMAT`), plus OpenTelemetry:
/// every span is part of a trace whose id the log lines show, and when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set, spans go to it over OTLP/gRPC (Jaeger and `streambank-trace-viewer` listen on 4317) as service
/// `OTEL_SERVICE_NAME` (else `service`). Keep the returned guard until exit: dropping it flushes the
/// last spans.
pub fn init(service: &str, default_filter: &str, settings: &Telemetry) -> TelemetryGuard {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let name = settings
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    // `service.instance.id` tells processes apart in a trace: Jaeger's JSON keys each span's process by
    // it, so without one the api, relay and worker of one trace would share a single process entry.
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".to_owned());
    let instance = format!("{name}@{host}:{}", std::process::id());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance,
        ))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = settings.otlp_endpoint.clone() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => eprintln!(
                "{service}: OTEL_EXPORTER_OTLP_ENDPOINT: cannot build the OTLP exporter ({e}); spans are not exported"
            ),
        }
    }
    // Without an exporter the provider still gives every span a trace id: log lines carry it, and the
    // outbox carries it on to the relay and the worker, whose lines then carry the same id.
    let provider = builder.build();
    let tracer = provider.tracer(service.to_owned());
    let filter = filter(settings.log_filter.as_deref().unwrap_or(default_filter));
    let json = settings.log_format == LogFormat::Json;
    let _ = subscriber_writing_to(filter, Some(tracer), json, ansi(), std::io::stderr).try_init();
    TelemetryGuard(Some(provider))
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
    subscriber_writing_to(filter, tracer, json, ansi(), std::io::stderr)
}

/// Colour codes only for a person at a terminal, never into a file or a pipe (nor with `NO_COLOR`).
fn ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// [`subscriber`] with its parts chosen by the caller, writing lines to `writer`.
fn subscriber_writing_to<W>(
    filter: EnvFilter,
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    json: bool,
    ansi: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let slot = logfmt::DispatchSlot::default();
    let fmt: BoxedLayer = if json {
        let format = tracing_subscriber::fmt::format().json();
        Box::new(
            tracing_subscriber::fmt::layer()
                .json()
                .event_format(logfmt::JsonWithTraceId(format, slot.clone()))
                .with_ansi(false)
                .with_writer(writer),
        )
    } else {
        let format = tracing_subscriber::fmt::format().without_time();
        Box::new(
            tracing_subscriber::fmt::layer()
                .event_format(logfmt::TextWithTraceId(format, slot.clone()))
                .with_ansi(ansi)
                .with_writer(writer),
        )
    };
    let mut layers = vec![fmt];
    if let Some(tracer) = tracer {
        layers.push(Box::new(tracing_opentelemetry::layer().with_tracer(tracer)));
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(logfmt::CaptureDispatch(slot))
        .with(filter)
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

/// Targets kept at `warn` unless `RUST_LOG` names them: Postgres notices that sqlx relays at `info`
/// ("relation ... already exists, skipping" from every start's migrations), which say nothing to act on.
pub const QUIET_TARGETS: &[&str] = &["sqlx::postgres::notice"];

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
    for target in QUIET_TARGETS {
        if !directives.contains(target)
            && let Ok(directive) = format!("{target}=warn").parse()
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
/// span is not part of an OpenTelemetry trace (a process set up with [`init_logging`] only, or outside
/// any span).
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::*;

    /// Lines written by a subscriber, kept for the test to read.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().expect("lines")).into_owned()
        }
    }

    fn logged(json: bool) -> (String, String) {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = subscriber_writing_to(
            filter("info"),
            Some(provider.tracer("test")),
            json,
            false,
            move || writer.clone(),
        );
        let trace_id = tracing::subscriber::with_default(subscriber, || {
            tracing::info!("outside any span");
            let span = tracing::info_span!("request", uri = "/v1/transfers");
            let _entered = span.enter();
            tracing::info!(amount = 25, "inside the request");
            tracing::info!(target: "sqlx::postgres::notice", "relation already exists, skipping");
            span.context().span().span_context().trace_id().to_string()
        });
        (lines.text(), trace_id)
    }

    #[test]
    fn text_lines_in_a_span_carry_its_trace_id_and_no_colour_codes() {
        let (text, trace_id) = logged(false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(!lines[0].contains("trace_id="), "{text}");
        assert!(
            lines[1].contains(&format!(" trace_id={trace_id} ")),
            "{text}"
        );
        assert!(lines[1].contains("inside the request amount=25"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
        assert!(
            !text.contains("skipping"),
            "sqlx notices are quiet at info: {text}"
        );
    }

    #[test]
    fn json_lines_in_a_span_carry_its_trace_id() {
        let (text, trace_id) = logged(true);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].get("trace_id").is_none(), "{text}");
        assert_eq!(lines[1]["trace_id"], trace_id.as_str(), "{text}");
        assert_eq!(
            lines[1]["fields"]["message"], "inside the request",
            "{text}"
        );
    }

    #[test]
    fn naming_the_notice_target_lets_its_lines_through() {
        let quiet = filter("info");
        let loud = filter("info,sqlx::postgres::notice=info");
        assert!(
            quiet.to_string().contains("sqlx::postgres::notice=warn"),
            "{quiet}"
        );
        assert!(
            !loud.to_string().contains("sqlx::postgres::notice=warn"),
            "{loud}"
        );
    }
}
