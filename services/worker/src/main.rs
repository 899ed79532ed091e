use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    streambank_telemetry::init_logging("info");
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
