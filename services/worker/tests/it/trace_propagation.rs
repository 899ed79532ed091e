//! Tracing across the bus: the outbox row carries the request's trace context, the relay's publish span
//! continues it, and the worker's handling span continues the publish span, so one trace shows all three.
//! Spans are captured with the OpenTelemetry SDK's in-memory exporter.

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use streambank_service::{Bank, Role, TransferRequest};
use streambank_testkit::{TestDb, fixtures};
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

#[tokio::test]
async fn the_workers_span_is_in_the_trace_of_the_request_that_caused_it() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let _subscriber = tracing::subscriber::set_default(streambank_telemetry::subscriber(
        "info",
        Some(provider.tracer("test")),
    ));

    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    let domain = format!("{}.example.com", uuid::Uuid::new_v4().simple());
    // The worker below mails these users: a domain of their own keeps their mail apart from other
    // tests' in the shared SMTP catcher.
    let email = |name: &str| format!("{name}@{domain}");
    let banker = fixtures::user_at(&bank, "banker", &email("banker"), Role::Banker).await;
    let ann = fixtures::user_at(&bank, "ann", &email("ann"), Role::Customer).await;
    let bob = fixtures::user_at(&bank, "bob", &email("bob"), Role::Customer).await;
    let from = bank.open_account(ann, "USD").await.expect("open");
    let to = bank.open_account(bob, "USD").await.expect("open");
    bank.deposit(banker, from.id, 100, "USD")
        .await
        .expect("deposit");

    // The API request (its span stands in for the HTTP layer's).
    let request = tracing::info_span!("http request", uri = "/v1/transfers");
    let request_trace = request.context().span().span_context().trace_id();
    let transfer = TransferRequest {
        from_account_id: from.id,
        to_account_id: to.id,
        amount: 25,
        currency: "USD",
    };
    bank.transfer(ann, None, transfer)
        .instrument(request.clone())
        .await
        .expect("transfer");
    drop(request);

    let prefix = format!("test-{}", uuid::Uuid::new_v4().simple());
    let redis_url = streambank_testkit::redis_url();
    let mut redis = streambank_testkit::redis().await;
    streambank_relay::publish_batch(&db.pool, &mut redis, &prefix, 500, 10_000)
        .await
        .expect("publish");
    // Drained step by step: no health listener, no sweeps, no mail for a transfer's rows.
    let config = streambank_worker::Config {
        health_addr: "127.0.0.1:0".parse().expect("addr"),
        ..streambank_worker::Config::new(db.url.clone(), redis_url, prefix)
    };
    config
        .build()
        .expect("worker")
        .drain()
        .await
        .expect("drain");
    provider.force_flush().expect("flush");

    let spans = exporter.get_finished_spans().expect("spans");
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    let of_transfer = |name: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == name && attr(s, "event_type").as_deref() == Some("transfer.completed")
            })
            .unwrap_or_else(|| panic!("no {name} span for transfer.completed"))
            .clone()
    };
    let publish = of_transfer("publish event");
    let handle = of_transfer("handle event");
    assert_eq!(
        publish.span_context.trace_id(),
        request_trace,
        "the relay continues the request's trace"
    );
    assert_eq!(
        handle.span_context.trace_id(),
        request_trace,
        "the worker continues the request's trace"
    );
    assert_eq!(
        handle.parent_span_id,
        publish.span_context.span_id(),
        "handling is a child of publishing"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "Transfer" && s.span_context.trace_id() == request_trace),
        "the service span too"
    );
}
