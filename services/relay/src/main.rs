use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let _telemetry = streambank_telemetry::init("streambank-relay", "info");
    let relay = match streambank_relay::Config::from_env().and_then(streambank_relay::Relay::new) {
        Ok(relay) => relay,
        Err(e) => {
            eprintln!("streambank-relay: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match relay.run(streambank_telemetry::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambank-relay: {e:#}");
            ExitCode::FAILURE
        }
    }
}
