use std::process::ExitCode;

use anyhow::Context as _;

#[tokio::main]
async fn main() -> ExitCode {
    streambank_telemetry::init_logging("info");
    match serve().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambank-trace-viewer: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = streambank_trace_viewer::Config::from_env()?;
    let ui = tokio::net::TcpListener::bind(config.ui_addr)
        .await
        .with_context(|| format!("cannot listen on TRACE_UI_ADDR {}", config.ui_addr))?;
    let otlp = tokio::net::TcpListener::bind(config.otlp_addr)
        .await
        .with_context(|| format!("cannot listen on OTLP_GRPC_ADDR {}", config.otlp_addr))?;
    tracing::info!(
        ui = %format_args!("http://{}", config.ui_addr),
        otlp = %config.otlp_addr,
        "trace viewer up: Jaeger UI and query API, OTLP/gRPC collector"
    );
    streambank_trace_viewer::run(
        ui,
        otlp,
        config.max_traces,
        streambank_telemetry::shutdown_signal(),
    )
    .await
}
