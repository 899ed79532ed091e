use std::process::ExitCode;

use streambank_api::{Api, Config, shutdown_signal};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("streambank-api: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _telemetry = streambank_telemetry::init("streambank-api", "info", &config.telemetry);
    if config.using_development_key() {
        tracing::warn!(
            "TOKEN_SYMMETRIC_KEY is not set: using the public development key; never do this in production"
        );
    }
    let api = match Api::bind(&config).await {
        Ok(api) => api,
        Err(e) => {
            eprintln!("streambank-api: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if let (Ok(rest), Ok(grpc), Ok(gateway)) =
        (api.http_addr(), api.grpc_addr(), api.gateway_addr())
    {
        tracing::info!(%rest, %grpc, %gateway, token_kind = %config.token_kind, "API listening");
    }
    match api.run(shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streambank-api: {e:#}");
            ExitCode::FAILURE
        }
    }
}
