//! The log line format: tracing-subscriber's own (text or JSON), with the OpenTelemetry trace id of the
//! current span added, so that a log line can be looked up in the trace viewer and the lines of one
//! request, its outbox event and the worker's handling of it can be found with one `grep`.

use std::fmt;
use std::sync::{Arc, OnceLock};

use opentelemetry::trace::TraceContextExt as _;
use tracing::dispatcher::WeakDispatch;
use tracing::{Dispatch, Event, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The dispatcher the subscriber became, which the formatters need to ask the OpenTelemetry layer for a
/// span's context: inside a subscriber's callback `Span::current()` sees no dispatcher (tracing forbids
/// re-entry), so the span is looked up by id instead. Filled by [`CaptureDispatch`] at registration.
#[derive(Debug, Clone, Default)]
pub struct DispatchSlot(Arc<OnceLock<WeakDispatch>>);

impl DispatchSlot {
    /// The trace id of the event's current span (from the formatter's context), if it has one.
    fn trace_id<S, N>(&self, ctx: &FmtContext<'_, S, N>) -> Option<String>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        let span = ctx.lookup_current()?;
        let dispatch = self.0.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let span_ref = context.span();
        let span_context = span_ref.span_context();
        span_context
            .is_valid()
            .then(|| span_context.trace_id().to_string())
    }
}

/// A layer that does nothing but remember the dispatcher it is registered with (see [`DispatchSlot`]).
#[derive(Debug)]
pub struct CaptureDispatch(pub DispatchSlot);

impl<S: Subscriber> tracing_subscriber::Layer<S> for CaptureDispatch {
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.0.0.set(subscriber.downgrade());
    }
}

/// The trace id (32 hex digits) of the current span, when it is part of an OpenTelemetry trace.
pub fn current_trace_id() -> Option<String> {
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let span_context = span_ref.span_context();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// Text lines: `<time> trace_id=<hex>  INFO target: message fields`, where the inner format is
/// tracing-subscriber's full format without its time (written here first, so colours stay as they are).
#[derive(Debug)]
pub struct TextWithTraceId<F>(pub F, pub DispatchSlot);

impl<S, N, F> FormatEvent<S, N> for TextWithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        if let Some(trace_id) = self.1.trace_id(ctx) {
            write!(writer, " trace_id={trace_id}")?;
        }
        writer.write_char(' ')?;
        self.0.format_event(ctx, writer, event)
    }
}

/// JSON lines: tracing-subscriber's JSON object with a `trace_id` member first when there is one.
#[derive(Debug)]
pub struct JsonWithTraceId<F>(pub F, pub DispatchSlot);

impl<S, N, F> FormatEvent<S, N> for JsonWithTraceId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let Some(trace_id) = self.1.trace_id(ctx) else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) if rest.starts_with('}') => {
                write!(writer, "{{\"trace_id\":\"{trace_id}\"{rest}")
            }
            Some(rest) => write!(writer, "{{\"trace_id\":\"{trace_id}\",{rest}"),
            None => writer.write_str(&line),
        }
    }
}
