//! The real `bankctl` binary, run as an operator runs it: against `database_url`, with whatever else
//! `env` sets, and without the test's own `RUST_LOG`.

use std::process::{Command, Output};

/// Runs `bankctl args` against `database_url`, with `env` added.
pub fn bankctl_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bankctl"));
    command
        .args(args)
        .env("DATABASE_URL", database_url)
        .env_remove("RUST_LOG");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("run bankctl")
}

/// Runs `bankctl args` against `database_url`.
pub fn bankctl(database_url: &str, args: &[&str]) -> Output {
    bankctl_with(database_url, args, &[])
}

/// Runs `bankctl args` against `database_url` with `env` added, fails the test unless it succeeds,
/// and returns what it printed.
pub fn bankctl_ok(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let output = bankctl_with(database_url, args, env);
    assert!(
        output.status.success(),
        "bankctl {args:?} failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}
