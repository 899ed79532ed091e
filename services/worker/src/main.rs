use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = streambank_telemetry::init("streambank-worker", "info");
    let config = match streambank_worker::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("streambank-worker: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match streambank_worker::run(config, streambank_telemetry::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambank-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
