use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let config: streambank_relay::Config = streambank_config::load("streambank-relay");
    let _telemetry = streambank_telemetry::init("streambank-relay", "info", &config.telemetry);
    let result = match streambank_relay::Relay::new(config) {
        Ok(relay) => relay.run(streambank_telemetry::shutdown_signal()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambank-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
