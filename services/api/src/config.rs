//! The API process's configuration, from environment variables (architecture §3), read the way every
//! StreamBank binary reads its own (`streambank-config`).
//!
//! Every variable has a development default. A bad value stops the process at start with one line that
//! names the variable (`TOKEN_SYMMETRIC_KEY must be exactly 32 bytes, got 31`), never at the first request.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use streambank_auth::{TokenKey, TokenKind};
use streambank_config::{AppEnv, positive_duration, values};

pub use streambank_config::{ConfigError, parse_duration};

/// The development key, used (with a loud warning) only outside production.
const DEVELOPMENT_TOKEN_KEY: &str = "streambank-dev-key-not-a-secret!";

/// The API's settings, from environment variables (`streambank-api --help` lists them).
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "streambank-api",
    about = "StreamBank's REST, gRPC and HTTP/JSON gateway listeners over one service layer."
)]
pub struct Config {
    #[command(flatten)]
    pub environment: streambank_config::Environment,
    #[command(flatten)]
    pub telemetry: streambank_config::Telemetry,
    #[command(flatten)]
    pub database: streambank_config::Database,
    /// Connections in the Postgres pool.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value = "32", value_parser = values::positive::<u32>)]
    pub database_max_connections: u32,
    /// A streaming replica (hot standby) of `DATABASE_URL` for the lists: statements, transfer
    /// histories, notifications (the pool has `DATABASE_MAX_CONNECTIONS` too). Unset: every read
    /// goes to the primary.
    #[arg(long, env = "DATABASE_READ_URL", value_parser = values::postgres_url, hide_env_values = true)]
    pub database_read_url: Option<String>,
    /// How long a list waits for the replica to replay its caller's last write before it reads the
    /// primary instead (a replica that does not answer the check in that time, or 10 ms, counts as
    /// unreachable until a probe reaches it).
    #[arg(long, env = "DATABASE_READ_MAX_WAIT", default_value = "50ms", value_parser = parse_duration)]
    pub database_read_max_wait: Duration,
    /// Redis, for readiness.
    #[command(flatten)]
    pub redis: streambank_config::Redis,
    /// The REST listener.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080", value_parser = values::socket_addr)]
    pub http_addr: SocketAddr,
    /// The gRPC listener.
    #[arg(long, env = "GRPC_ADDR", default_value = "0.0.0.0:9090", value_parser = values::socket_addr)]
    pub grpc_addr: SocketAddr,
    /// The HTTP/JSON gateway's listener.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "0.0.0.0:8081", value_parser = values::socket_addr)]
    pub gateway_addr: SocketAddr,
    /// Where `/metrics` is served, apart from the public listeners.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9100", value_parser = values::socket_addr)]
    pub metrics_addr: SocketAddr,
    /// The gRPC server the gateway calls. Unset: this process's own gRPC listener, which with the
    /// default `GRPC_ADDR` is the contract's default `http://127.0.0.1:9090`.
    #[arg(long, env = "GATEWAY_UPSTREAM", value_parser = gateway_upstream)]
    pub gateway_upstream: Option<String>,
    /// The token format.
    #[arg(long, env = "TOKEN_KIND", default_value = "paseto")]
    pub token_kind: TokenKind,
    /// The 32-byte token key. Unset: a public development key, refused when `APP_ENV=production`.
    #[arg(long = "token-symmetric-key", env = "TOKEN_SYMMETRIC_KEY", value_parser = TokenKey::parse, hide_env_values = true)]
    pub token_key: Option<TokenKey>,
    /// How long an access token is valid.
    #[arg(long, env = "ACCESS_TOKEN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_token_ttl: Duration,
    /// How long a refresh token (and its session) is valid.
    #[arg(long, env = "REFRESH_TOKEN_TTL", default_value = "24h", value_parser = parse_duration)]
    pub refresh_token_ttl: Duration,
    /// Origins allowed to call the API from a browser (comma-separated).
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", default_value = "", value_parser = |raw: &str| Ok::<_, String>(values::list(raw)))]
    // `std::vec::Vec`, spelled out, is one value for clap (a bare `Vec` would be one value per flag).
    pub cors_allowed_origins: std::vec::Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (comma-separated IPs). Empty: the client is the
    /// socket's peer, whatever headers say.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "", value_parser = values::ip_list)]
    pub trusted_proxies: std::vec::Vec<IpAddr>,
    /// Logins and registrations allowed per client address per minute, across all listeners.
    #[arg(long, env = "AUTH_RATE_LIMIT_PER_MINUTE", default_value = "30", value_parser = values::positive::<u32>)]
    pub auth_rate_limit_per_minute: u32,
    /// The longest a request may take before it is answered 503 `TIMEOUT`.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// The largest request body, in bytes.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value = "65536", value_parser = values::positive::<usize>)]
    pub body_limit_bytes: usize,
    /// How long a connection may take to send a request's head.
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,
    /// How long an idle keep-alive connection is kept.
    #[arg(long, env = "IDLE_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
    /// How long a write may make no progress (a client that does not read its answers) before the
    /// connection is closed.
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "30s", value_parser = positive_duration)]
    pub write_timeout: Duration,
    /// Open connections per listener; more are closed at once.
    #[arg(long, env = "MAX_CONNECTIONS", default_value = "2048", value_parser = values::positive::<usize>)]
    pub max_connections: usize,
    /// Open connections per client address per listener (`TRUSTED_PROXIES` are exempt).
    #[arg(long, env = "MAX_CONNECTIONS_PER_CLIENT", default_value = "256", value_parser = values::positive::<usize>)]
    pub max_connections_per_client: usize,
    /// The mail catcher's web page, linked from the landing page at `/`.
    #[arg(long, env = "LANDING_MAIL_URL", default_value = "http://127.0.0.1:1080", value_parser = values::http_url)]
    pub landing_mail_url: String,
    /// The trace viewer (Jaeger UI), linked from the landing page at `/`.
    #[arg(long, env = "LANDING_TRACES_URL", default_value = "http://127.0.0.1:16686", value_parser = values::http_url)]
    pub landing_traces_url: String,
}

/// An `http://` URL with a host, such as `http://127.0.0.1:9090`.
fn gateway_upstream(raw: &str) -> Result<String, String> {
    match raw.parse::<axum::http::Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => Ok(raw.to_owned()),
        _ => Err(format!(
            "must be an http:// URL such as http://127.0.0.1:9090, got {raw:?}"
        )),
    }
}

impl Config {
    /// Reads the process's arguments and environment; `--help` and bad values end the process.
    pub fn load() -> Result<Self, ConfigError> {
        streambank_config::load::<Self>("streambank-api").checked()
    }

    /// Reads variables through `lookup` (tests pass a map); unset variables take their defaults.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        streambank_config::from_lookup::<Self>(lookup)?.checked()
    }

    /// The checks that involve more than one variable.
    fn checked(self) -> Result<Self, ConfigError> {
        if self.token_key.is_none() && self.environment.app_env == AppEnv::Production {
            return Err(ConfigError::new(
                "TOKEN_SYMMETRIC_KEY",
                "is required when APP_ENV=production",
            ));
        }
        // Fails now, not at the first login, if the key does not suit the format.
        streambank_auth::maker(self.token_kind, &self.token_key())
            .map_err(|problem| ConfigError::new("TOKEN_SYMMETRIC_KEY", problem))?;
        Ok(self)
    }

    /// The token key: `TOKEN_SYMMETRIC_KEY`, or the public development key.
    pub fn token_key(&self) -> TokenKey {
        match &self.token_key {
            Some(key) => key.clone(),
            None => TokenKey::parse(DEVELOPMENT_TOKEN_KEY)
                .unwrap_or_else(|e| unreachable!("the development key is 32 bytes: {e}")),
        }
    }

    /// Whether the public development key is in use, so that `main` can warn loudly.
    pub fn using_development_key(&self) -> bool {
        self.token_key.is_none()
    }

    /// Bounds on each listener's connections.
    pub fn connections(&self) -> crate::conn::ConnectionLimits {
        crate::conn::ConnectionLimits {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            write_timeout: self.write_timeout,
            max_connections: self.max_connections,
            max_connections_per_client: self.max_connections_per_client,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(&move |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_and_one_line_errors_naming_the_variable() {
        let defaults = config(&[]).expect("defaults");
        assert_eq!(defaults.http_addr.port(), 8080);
        assert_eq!(defaults.grpc_addr.port(), 9090);
        assert_eq!(defaults.gateway_addr.port(), 8081);
        assert_eq!(defaults.metrics_addr.port(), 9100);
        assert_eq!(defaults.connections().max_connections, 2048);
        assert_eq!(defaults.connections().idle_timeout, Duration::from_secs(60));
        assert_eq!(
            defaults.connections().write_timeout,
            Duration::from_secs(30)
        );
        assert_eq!(defaults.connections().max_connections_per_client, 256);
        let per_client =
            config(&[("MAX_CONNECTIONS_PER_CLIENT", "0")]).expect_err("zero per client");
        assert_eq!(
            per_client.to_string(),
            "MAX_CONNECTIONS_PER_CLIENT must be a positive number, got \"0\""
        );
        let idle = config(&[("IDLE_TIMEOUT", "0s")]).expect_err("zero idle timeout");
        assert!(
            idle.to_string().starts_with("IDLE_TIMEOUT must be longer"),
            "{idle}"
        );
        assert_eq!(defaults.database_read_url, None, "no replica unless named");
        assert_eq!(defaults.database_read_max_wait, Duration::from_millis(50));
        let read_url = config(&[("DATABASE_READ_URL", "mysql://replica")]).expect_err("read url");
        assert_eq!(
            read_url.to_string(),
            "DATABASE_READ_URL must be a postgres:// URL"
        );
        assert_eq!(defaults.gateway_upstream, None);
        let upstream = config(&[("GATEWAY_UPSTREAM", "localhost:9090")]).expect_err("upstream");
        assert!(
            upstream
                .to_string()
                .starts_with("GATEWAY_UPSTREAM must be an http:// URL"),
            "{upstream}"
        );
        assert_eq!(defaults.token_kind, TokenKind::Paseto);
        assert!(defaults.using_development_key());

        let short_key = config(&[("TOKEN_SYMMETRIC_KEY", &"k".repeat(31))]).expect_err("31 bytes");
        assert_eq!(
            short_key.to_string(),
            "TOKEN_SYMMETRIC_KEY must be exactly 32 bytes, got 31"
        );
        let kind = config(&[("TOKEN_KIND", "saml")]).expect_err("kind");
        assert_eq!(
            kind.to_string(),
            "TOKEN_KIND must be paseto or jwt, got \"saml\""
        );
        let ttl = config(&[("ACCESS_TOKEN_TTL", "soon")]).expect_err("ttl");
        assert!(
            ttl.to_string()
                .starts_with("ACCESS_TOKEN_TTL must be a duration"),
            "{ttl}"
        );
        let production = config(&[("APP_ENV", "production")]).expect_err("key required");
        assert_eq!(
            production.to_string(),
            "TOKEN_SYMMETRIC_KEY is required when APP_ENV=production"
        );
        let addr = config(&[("HTTP_ADDR", "localhost")]).expect_err("addr");
        assert!(
            addr.to_string().starts_with("HTTP_ADDR must be an address"),
            "{addr}"
        );
    }
}
