//! `streambank-config`: one way to configure every StreamBank process.
//!
//! Each binary describes its settings as a `clap` derive whose every argument names its environment
//! variable (`#[arg(long, env = "HTTP_ADDR")]`) and shares the sections here by `#[command(flatten)]`:
//! [`Database`], [`Redis`], [`Streams`], [`Environment`] and [`Telemetry`]. [`load`] reads them from the process's
//! environment and arguments (`--help` lists every variable with its default); tests call
//! [`from_lookup`] with a map and see nothing of the process's environment.
//!
//! A bad value stops the process at start with one line that names the variable
//! (`ACCESS_TOKEN_TTL must be a duration such as 30s, 15m or 24h, got "soon"`). An empty variable counts
//! as unset. Durations are written one way everywhere ([`parse_duration`]).

pub mod duration;
pub mod values;

use std::ffi::OsString;

use clap::Arg;
use clap::error::{ContextKind, ContextValue, ErrorKind};

pub use duration::{parse_duration, positive_duration};

/// Where every process finds Postgres unless told otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/streambank";
/// Where every process finds Redis unless told otherwise.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Postgres.
#[derive(Debug, Clone, clap::Args)]
pub struct Database {
    /// The Postgres database.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "DATABASE_URL",
        default_value = DEFAULT_DATABASE_URL,
        value_parser = values::postgres_url,
        hide_env_values = true
    )]
    pub url: String,
}

impl Database {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }
}

/// Redis.
#[derive(Debug, Clone, clap::Args)]
pub struct Redis {
    /// The Redis server.
    #[arg(
        id = "redis_url",
        long = "redis-url",
        env = "REDIS_URL",
        default_value = DEFAULT_REDIS_URL,
        value_parser = values::redis_url,
        hide_env_values = true
    )]
    pub url: String,
}

impl Redis {
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into() }
    }
}

/// The event streams: their key prefix, and how many partitions each is split into.
#[derive(Debug, Clone, clap::Args)]
pub struct Streams {
    /// Prefix of every stream key (`<prefix>:events:transfers`); tests use a unique one each.
    #[arg(
        id = "stream_prefix",
        long = "stream-prefix",
        env = "STREAM_PREFIX",
        default_value = "bank"
    )]
    pub prefix: String,
    /// Partitions per stream. An event goes to the partition of its aggregate (a stable hash of the
    /// source account for transfers, of the user for user events); with more than one, each
    /// partition's keys carry a hash tag (`{<prefix>:p3}:events:transfers`) so that a Redis Cluster
    /// spreads them over its slots. Relay and worker must agree on it.
    #[arg(
        id = "stream_partitions",
        long = "stream-partitions",
        env = "STREAM_PARTITIONS",
        default_value = "1",
        value_parser = values::partitions
    )]
    pub partitions: u16,
}

impl Streams {
    /// One partition: the keys as they were before partitions.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
            partitions: 1,
        }
    }

    /// The key prefix of each partition, in order (see [`partition_prefix`]).
    pub fn partition_prefixes(&self) -> Vec<String> {
        (0..self.partitions)
            .map(|p| partition_prefix(&self.prefix, self.partitions, p))
            .collect()
    }
}

/// The key prefix of partition `partition` of `partitions`: `prefix` itself when there is one, else
/// `{prefix:p<partition>}`, a Redis Cluster hash tag, so that all of a partition's streams share a
/// slot (one `XREADGROUP` may read them together) and partitions spread over the slots.
pub fn partition_prefix(prefix: &str, partitions: u16, partition: u16) -> String {
    if partitions <= 1 {
        prefix.to_owned()
    } else {
        format!("{{{prefix}:p{partition}}}")
    }
}

/// What the process runs as: a development machine or production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AppEnv {
    #[default]
    Development,
    Production,
}

/// The deployment environment.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct Environment {
    /// `production` refuses development defaults that are not safe (the API's token key).
    #[arg(
        long = "app-env",
        env = "APP_ENV",
        value_enum,
        default_value = "development"
    )]
    pub app_env: AppEnv,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Pretty,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Telemetry {
    /// Which log lines to write, in `tracing`'s filter syntax (`info`, `warn,streambank_api=debug`).
    /// Unset: the binary's default, `info`.
    #[arg(id = "log_filter", long = "log-filter", env = "RUST_LOG")]
    pub log_filter: Option<String>,
    /// How log lines are written.
    #[arg(
        id = "log_format",
        long = "log-format",
        env = "LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    /// Where spans are exported over OTLP/gRPC (Jaeger or `streambank-trace-viewer`, port 4317).
    /// Unset: spans are not exported (log lines still carry their trace id).
    #[arg(
        id = "otlp_endpoint",
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    pub otlp_endpoint: Option<String>,
    /// The service name the traces show. Unset: the binary's own name.
    #[arg(id = "service_name", long = "service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

/// A configuration error: one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable} {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            problem: problem.into(),
        }
    }
}

/// Why [`load_from`] gave no configuration.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A variable or flag with a bad value.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// What clap answers itself: `--help`, `--version`, an unknown flag.
    #[error(transparent)]
    Cli(clap::Error),
}

/// Reads `T` from the process's arguments and environment; prints `--help` or a one-line error naming
/// the variable (`<binary>: HTTP_ADDR must be ...`) and exits when it cannot.
pub fn load<T: clap::Parser>(binary: &str) -> T {
    match load_from::<T>(std::env::args_os(), &|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(LoadError::Cli(e)) => e.exit(),
        Err(LoadError::Invalid(e)) => {
            eprintln!("{binary}: {e}");
            std::process::exit(1)
        }
    }
}

/// Reads `T` from `lookup` alone (a test's map): nothing of the process's environment or arguments.
pub fn from_lookup<T: clap::Parser>(
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<T, ConfigError> {
    match load_from::<T>([OsString::from("streambank")], lookup) {
        Ok(config) => Ok(config),
        Err(LoadError::Invalid(e)) => Err(e),
        Err(LoadError::Cli(e)) => Err(ConfigError::new("(arguments)", e.to_string())),
    }
}

/// Reads `T` from command-line arguments and variables found through `lookup`; flags given on the command
/// line win over variables.
///
/// The variables are turned into flags ahead of the real ones, and clap's own reading of the environment
/// is switched off, so that empty variables count as unset and tests are not at the mercy of the
/// environment they run in.
pub fn load_from<T: clap::Parser>(
    args: impl IntoIterator<Item = OsString>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<T, LoadError> {
    let described = T::command();
    let mut args = args.into_iter();
    let mut argv: Vec<OsString> = args.next().into_iter().collect();
    for arg in described.get_arguments() {
        let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        let value = variable
            .to_str()
            .and_then(lookup)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty());
        if let Some(value) = value {
            argv.push(format!("--{long}={value}").into());
        }
    }
    let given: Vec<OsString> = args.collect();
    let asked_for_help = given
        .iter()
        .any(|a| ["-h", "--help", "-V", "--version"].iter().any(|h| a == h));
    argv.extend(given);

    // `--help` is answered by the command that still names its variables.
    let parser = if asked_for_help {
        described.clone()
    } else {
        described.clone().mut_args(|arg| arg.env(None::<&str>))
    }
    .args_override_self(true);
    let matches = parser
        .try_get_matches_from(argv)
        .map_err(|e| explain(&described, e))?;
    T::from_arg_matches(&matches).map_err(|e| explain(&described, e))
}

/// Restates clap's refusal of a value as `VARIABLE problem`.
fn explain(command: &clap::Command, error: clap::Error) -> LoadError {
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return LoadError::Cli(error);
    }
    let Some(ContextValue::String(flag)) = error.get(ContextKind::InvalidArg) else {
        return LoadError::Cli(error);
    };
    let Some(arg) = command.get_arguments().find(|arg| names_flag(arg, flag)) else {
        return LoadError::Cli(error);
    };
    let variable = arg
        .get_env()
        .and_then(|v| v.to_str())
        .map(str::to_owned)
        .unwrap_or_else(|| flag.clone());
    let value = match error.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(value)) => value.clone(),
        _ => String::new(),
    };
    let problem = match std::error::Error::source(&error) {
        Some(source) => source.to_string(),
        None => {
            let possible: Vec<String> = arg
                .get_possible_values()
                .iter()
                .map(|p| p.get_name().to_owned())
                .collect();
            format!("must be one of {}, got {value:?}", possible.join(", "))
        }
    };
    LoadError::Invalid(ConfigError::new(variable, problem))
}

/// Whether clap's rendering of an argument (`--http-addr <HTTP_ADDR>`) is this argument.
fn names_flag(arg: &Arg, rendered: &str) -> bool {
    arg.get_long().is_some_and(|long| {
        rendered
            .strip_prefix("--")
            .and_then(|rest| rest.strip_prefix(long))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '=']))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Example {
        #[command(flatten)]
        database: Database,
        #[command(flatten)]
        redis: Redis,
        #[command(flatten)]
        streams: Streams,
        #[command(flatten)]
        environment: Environment,
        #[command(flatten)]
        telemetry: Telemetry,
        /// How long to wait.
        #[arg(long, env = "EXAMPLE_WAIT", default_value = "15m", value_parser = parse_duration)]
        wait: Duration,
    }

    fn example(vars: &[(&str, &str)]) -> Result<Example, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        from_lookup(&move |name| vars.get(name).cloned())
    }

    #[test]
    fn variables_defaults_and_one_line_errors() {
        let defaults = example(&[]).expect("defaults");
        assert_eq!(defaults.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(defaults.environment.app_env, AppEnv::Development);
        assert_eq!(defaults.wait, Duration::from_secs(900));

        let set = example(&[
            ("EXAMPLE_WAIT", " 30s "),
            ("APP_ENV", "production"),
            ("DATABASE_URL", ""),
        ])
        .expect("set");
        assert_eq!(set.wait, Duration::from_secs(30));
        assert_eq!(set.environment.app_env, AppEnv::Production);
        assert_eq!(set.database.url, DEFAULT_DATABASE_URL, "empty is unset");
        let json = example(&[("LOG_FORMAT", "JSON"), ("RUST_LOG", "warn")]).expect("json");
        assert_eq!(json.telemetry.log_format, LogFormat::Json);
        assert_eq!(json.telemetry.log_filter.as_deref(), Some("warn"));
        assert_eq!(defaults.telemetry.otlp_endpoint, None);

        let wait = example(&[("EXAMPLE_WAIT", "soon")]).expect_err("wait");
        assert_eq!(
            wait.to_string(),
            "EXAMPLE_WAIT must be a duration such as 30s, 15m or 24h, got \"soon\""
        );
        let env = example(&[("APP_ENV", "staging")]).expect_err("env");
        assert_eq!(
            env.to_string(),
            "APP_ENV must be one of development, production, got \"staging\""
        );
        let url = example(&[("DATABASE_URL", "mysql://x")]).expect_err("url");
        assert_eq!(url.to_string(), "DATABASE_URL must be a postgres:// URL");
    }

    #[test]
    fn flags_win_over_variables_and_help_names_every_variable() {
        let lookup = |name: &str| (name == "EXAMPLE_WAIT").then(|| "1m".to_owned());
        let parsed: Example = load_from(["x".into(), "--wait=2m".into()], &lookup).expect("flags");
        assert_eq!(parsed.wait, Duration::from_secs(120));

        let help = match load_from::<Example>(["x".into(), "--help".into()], &|_| None) {
            Err(LoadError::Cli(e)) => e.to_string(),
            other => panic!("expected help, got {other:?}"),
        };
        for variable in [
            "DATABASE_URL",
            "APP_ENV",
            "EXAMPLE_WAIT",
            "15m",
            "RUST_LOG",
            "LOG_FORMAT",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_SERVICE_NAME",
        ] {
            assert!(help.contains(variable), "{variable} missing from:\n{help}");
        }
    }
}
