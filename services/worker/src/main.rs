use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config: streambank_worker::Config = streambank_config::load("streambank-worker");
    let _telemetry = streambank_telemetry::init("streambank-worker", "info", &config.telemetry);
    match streambank_worker::run(config, streambank_telemetry::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambank-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
