//! One transfer, one trace: the viewer, the API, the relay and the worker run as processes exporting
//! spans to the viewer over OTLP/gRPC, a transfer is made over REST, and the viewer's Jaeger query API
//! answers one trace holding spans of all three services.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use streambank_service::{Bank, Role};
use streambank_testkit::process::{Spawned, Stack, free_port, wait_for_port};
use streambank_testkit::{TestDb, fixtures, rest};

/// A verified user at a domain of this test's own (the worker mails it).
async fn user(bank: &Bank, name: &str, role: Role) {
    fixtures::user_at(bank, name, &format!("{name}@trace.example.com"), role).await;
}

async fn call(request: reqwest::RequestBuilder) -> Value {
    let response = request.send().await.expect("request");
    let status = response.status();
    let body = response.text().await.expect("body");
    assert!(status.is_success(), "{status}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// The service names of a Jaeger trace object (`processes` map `processID` to `serviceName`).
fn services(trace: &Value) -> BTreeSet<String> {
    trace["processes"]
        .as_object()
        .map(|p| {
            p.values()
                .filter_map(|v| v["serviceName"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The viewer as a process, answering on its UI and OTLP ports; returns it and the two addresses.
async fn start_the_viewer() -> (Spawned, String, String) {
    let ui = format!("127.0.0.1:{}", free_port());
    let otlp = format!("127.0.0.1:{}", free_port());
    let mut viewer = Spawned::start(
        "streambank-trace-viewer",
        std::path::Path::new(env!("CARGO_BIN_EXE_streambank-trace-viewer")),
        &[
            ("TRACE_UI_ADDR", ui.clone()),
            ("OTLP_GRPC_ADDR", otlp.clone()),
        ],
    );
    wait_for_port(&mut viewer, &ui, Duration::from_secs(10)).await;
    wait_for_port(&mut viewer, &otlp, Duration::from_secs(10)).await;
    (viewer, ui, otlp)
}

/// Ann's transfer of 25.00 EUR to Bob over REST, after each logged in, opened an account, and the
/// banker funded Ann's.
async fn one_transfer_over_rest(client: &reqwest::Client, base: &str) {
    let mut tokens = Vec::new();
    for name in ["banker", "ann", "bob"] {
        tokens.push(rest::login(client, base, name).await.access);
    }
    let mut accounts = Vec::new();
    for token in &tokens[1..] {
        accounts.push(rest::open_account(client, base, token, "EUR").await);
    }
    rest::deposit(client, base, &tokens[0], accounts[0], 10_000, "EUR").await;
    let transfer = call(
        client
            .post(format!("{base}/v1/transfers"))
            .bearer_auth(&tokens[1])
            .header("idempotency-key", "one-trace")
            .json(&json!({"from_account_id": accounts[0], "to_account_id": accounts[1], "amount": 2_500, "currency": "EUR"})),
    )
    .await;
    assert_eq!(transfer["from_account"]["balance"], 7_500);
}

/// Asks the viewer until one trace of the API holds spans of all `wanted` services (the batch
/// exporters send every few seconds; the worker handles the event after the relay publishes it);
/// returns its id and the trace.
async fn wait_for_a_trace_of(
    client: &reqwest::Client,
    viewer_base: &str,
    stack: &mut Stack,
    wanted: &BTreeSet<String>,
) -> (String, Value) {
    let started = Instant::now();
    loop {
        stack.assert_running();
        let listed: Value = client
            .get(format!(
                "{viewer_base}/api/traces?service=streambank-api&limit=100"
            ))
            .send()
            .await
            .expect("query the viewer")
            .json()
            .await
            .expect("json");
        let hit = listed["data"].as_array().and_then(|traces| {
            traces
                .iter()
                .find(|t| services(t).is_superset(wanted))
                .cloned()
        });
        if let Some(trace) = hit {
            return (
                trace["traceID"].as_str().expect("traceID").to_owned(),
                trace,
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no trace with spans of {wanted:?} after 60 s; the viewer holds: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_trace_of_one_transfer_holds_spans_of_api_relay_and_worker() {
    let (_viewer, ui, otlp) = start_the_viewer().await;
    let db = TestDb::new().await;
    let bank = Bank::new(db.pool.clone());
    user(&bank, "banker", Role::Banker).await;
    user(&bank, "ann", Role::Customer).await;
    user(&bank, "bob", Role::Customer).await;
    let mut stack = Stack::start(
        &db.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}")),
            // The API's "request answered" line is at DEBUG.
            ("RUST_LOG", "info,streambank_api=debug".to_owned()),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    one_transfer_over_rest(&client, &stack.rest_base).await;

    let wanted: BTreeSet<String> = ["streambank-api", "streambank-relay", "streambank-worker"]
        .map(str::to_owned)
        .into();
    let viewer_base = format!("http://{ui}");
    let (trace_id, found) = wait_for_a_trace_of(&client, &viewer_base, &mut stack, &wanted).await;
    let operations: Vec<&str> = found["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .filter_map(|s| s["operationName"].as_str())
        .collect();
    assert!(operations.len() >= 3, "{operations:?}");

    // The same trace by id, as the UI's trace page asks for it.
    let by_id: Value = client
        .get(format!("{viewer_base}/api/traces/{trace_id}"))
        .send()
        .await
        .expect("trace by id")
        .json()
        .await
        .expect("json");
    let trace = &by_id["data"][0];
    assert_eq!(trace["traceID"], trace_id.as_str());
    assert!(services(trace).is_superset(&wanted), "{trace}");

    // The services list the UI's search form offers, and the UI itself.
    let listed: Value = client
        .get(format!("{viewer_base}/api/services"))
        .send()
        .await
        .expect("services")
        .json()
        .await
        .expect("json");
    let names: BTreeSet<String> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect();
    assert!(names.is_superset(&wanted), "{names:?}");
    let page = client
        .get(format!("{viewer_base}/search"))
        .send()
        .await
        .expect("the UI")
        .text()
        .await
        .expect("html");
    assert!(page.contains("Jaeger UI"), "{page}");

    // The API's log lines of the request carry the trace id (its stderr is not a terminal, so no
    // colour codes either).
    let api_log = stack.api.stderr();
    assert!(
        api_log.contains(&format!("trace_id={trace_id}")),
        "no API log line carries trace_id={trace_id}:\n{api_log}"
    );
    let worker_log = stack.worker.stderr();
    for (name, log) in [("api", &api_log), ("worker", &worker_log)] {
        assert!(
            !log.contains('\u{1b}'),
            "ANSI escape codes in the {name}'s log:\n{log}"
        );
    }
    println!("trace {trace_id}: {operations:?}");
}
