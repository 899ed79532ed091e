use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    streambank_telemetry::init_logging("warn");
    match bankctl::run(bankctl::Cli::parse()).await {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("bankctl: {err:#}");
            ExitCode::FAILURE
        }
    }
}
