//! The real `streambank-api` binary: bad configuration stops it with one line; SIGTERM stops it cleanly.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streambank_testkit::TestDb;
use streambank_testkit::process::free_port;

#[test]
fn bad_configuration_stops_the_process_with_one_line() {
    for (variable, value, expected) in [
        (
            "TOKEN_SYMMETRIC_KEY",
            "k".repeat(31),
            "streambank-api: TOKEN_SYMMETRIC_KEY must be exactly 32 bytes, got 31",
        ),
        (
            "TOKEN_KIND",
            "saml".to_owned(),
            "streambank-api: TOKEN_KIND must be paseto or jwt, got \"saml\"",
        ),
        (
            "ACCESS_TOKEN_TTL",
            "soon".to_owned(),
            "streambank-api: ACCESS_TOKEN_TTL must be a duration such as 30s, 15m or 24h, got \"soon\"",
        ),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_streambank-api"))
            .env(variable, value)
            .output()
            .expect("run");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim(), expected);
    }
}

#[tokio::test]
async fn sigterm_stops_accepting_and_exits_zero() {
    let db = TestDb::new().await;
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_streambank-api"))
        .env("DATABASE_URL", &db.url)
        .env("HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("GRPC_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("GATEWAY_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start streambank-api");
    let url = format!("http://127.0.0.1:{port}/healthz");
    let started = Instant::now();
    loop {
        if reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the API did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the API did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        reqwest::get(&url).await.is_err(),
        "nothing listens after shutdown"
    );
}
