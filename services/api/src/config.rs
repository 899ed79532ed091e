//! The API process's configuration, from environment variables (architecture §3).
//!
//! Every variable has a development default. A bad value stops the process at start with one line that
//! names the variable (`TOKEN_SYMMETRIC_KEY must be exactly 32 bytes, got 31`), never at the first request.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use streambank_auth::TokenKey;

/// The development key, used (with a loud warning) only outside production.
const DEVELOPMENT_TOKEN_KEY: &str = "streambank-dev-key-not-a-secret!";

#[derive(Debug, Clone)]
pub struct Config {
    pub app_env: String,
    pub database_url: String,
    pub database_max_connections: u32,
    pub redis_url: String,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub gateway_addr: SocketAddr,
    /// Where `/metrics` is served (`METRICS_ADDR`), apart from the public listeners.
    pub metrics_addr: SocketAddr,
    /// The gRPC server the gateway calls (`GATEWAY_UPSTREAM`). Unset: this process's own gRPC
    /// listener, which with the default `GRPC_ADDR` is the contract's default `http://127.0.0.1:9090`.
    pub gateway_upstream: Option<String>,
    pub token_kind: String,
    pub token_key: TokenKey,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// Origins allowed to call the API from a browser (`CORS_ALLOWED_ORIGINS`, comma-separated).
    pub cors_allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, comma-separated IPs). Empty: the
    /// client is the socket's peer, whatever headers say.
    pub trusted_proxies: Vec<IpAddr>,
    /// Logins and registrations allowed per client IP per minute (`AUTH_RATE_LIMIT_PER_MINUTE`).
    pub auth_rate_limit_per_minute: u32,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    /// Bounds on each listener's connections (`HEADER_READ_TIMEOUT`, `IDLE_TIMEOUT`,
    /// `WRITE_TIMEOUT`, `MAX_CONNECTIONS`, `MAX_CONNECTIONS_PER_CLIENT`).
    pub connections: crate::conn::ConnectionLimits,
    /// Set when the development key is in use, so that `main` can warn loudly.
    pub using_development_key: bool,
}

/// A configuration error: one line naming the variable.
#[derive(Debug, thiserror::Error)]
#[error("{variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

/// Where variables come from: the process environment, or a map in tests.
struct Source<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Source<'_> {
    fn var(&self, name: &'static str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T>(
        &self,
        name: &'static str,
        default: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let raw = self.var(name).unwrap_or_else(|| default.to_owned());
        f(raw.trim()).map_err(|problem| ConfigError {
            variable: name,
            problem,
        })
    }
}

/// Parses `500ms`, `30s`, `15m`, `24h` or `7d`.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("must be a duration such as 30s, 15m or 24h, got {raw:?}"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => {
            return Err(format!(
                "must be a duration such as 30s, 15m or 24h, got {raw:?}"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

fn positive_duration(raw: &str) -> Result<Duration, String> {
    parse_duration(raw).and_then(|d| {
        if d.is_zero() {
            Err(format!("must be longer than zero, got {raw:?}"))
        } else {
            Ok(d)
        }
    })
}

fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads variables through `lookup` (tests pass a map); unset variables take their defaults.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let src = Source(lookup);
        let app_env = src
            .var("APP_ENV")
            .unwrap_or_else(|| "development".to_owned());
        let production = app_env == "production";
        let (token_key, using_development_key) = match src.var("TOKEN_SYMMETRIC_KEY") {
            Some(raw) => (
                src.parse("TOKEN_SYMMETRIC_KEY", "", |_| TokenKey::parse(&raw))?,
                false,
            ),
            None if production => {
                return Err(ConfigError {
                    variable: "TOKEN_SYMMETRIC_KEY",
                    problem: "is required when APP_ENV=production".into(),
                });
            }
            None => (
                TokenKey::parse(DEVELOPMENT_TOKEN_KEY).map_err(|problem| ConfigError {
                    variable: "TOKEN_SYMMETRIC_KEY",
                    problem,
                })?,
                true,
            ),
        };
        let token_kind = src.parse("TOKEN_KIND", "paseto", |raw| match raw {
            "paseto" | "jwt" => Ok(raw.to_owned()),
            other => Err(format!("must be paseto or jwt, got {other:?}")),
        })?;
        // Fails now, not at the first login, if the key does not suit the format.
        streambank_auth::maker(&token_kind, &token_key).map_err(|problem| ConfigError {
            variable: "TOKEN_SYMMETRIC_KEY",
            problem,
        })?;

        Ok(Self {
            database_url: src.parse(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/streambank",
                |raw| {
                    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
                        Ok(raw.to_owned())
                    } else {
                        Err("must be a postgres:// URL".to_owned())
                    }
                },
            )?,
            database_max_connections: src.parse("DATABASE_MAX_CONNECTIONS", "32", |raw| {
                raw.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("must be a positive number, got {raw:?}"))
            })?,
            redis_url: src.parse("REDIS_URL", "redis://127.0.0.1:6379", |raw| {
                redis::Client::open(raw)
                    .map(|_| raw.to_owned())
                    .map_err(|e| format!("is not a Redis URL: {e}"))
            })?,
            http_addr: src.parse("HTTP_ADDR", "0.0.0.0:8080", |raw| {
                raw.parse()
                    .map_err(|_| format!("must be an address such as 0.0.0.0:8080, got {raw:?}"))
            })?,
            grpc_addr: src.parse("GRPC_ADDR", "0.0.0.0:9090", |raw| {
                raw.parse()
                    .map_err(|_| format!("must be an address such as 0.0.0.0:9090, got {raw:?}"))
            })?,
            gateway_addr: src.parse("GATEWAY_ADDR", "0.0.0.0:8081", |raw| {
                raw.parse()
                    .map_err(|_| format!("must be an address such as 0.0.0.0:8081, got {raw:?}"))
            })?,
            metrics_addr: src.parse("METRICS_ADDR", "0.0.0.0:9100", |raw| {
                raw.parse()
                    .map_err(|_| format!("must be an address such as 0.0.0.0:9100, got {raw:?}"))
            })?,
            gateway_upstream: match src.var("GATEWAY_UPSTREAM") {
                None => None,
                Some(raw) => Some(src.parse("GATEWAY_UPSTREAM", "", |_| {
                    let raw = raw.trim();
                    match raw.parse::<axum::http::Uri>() {
                        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {
                            Ok(raw.to_owned())
                        }
                        _ => Err(format!(
                            "must be an http:// URL such as http://127.0.0.1:9090, got {raw:?}"
                        )),
                    }
                })?),
            },
            token_kind,
            token_key,
            access_token_ttl: src.parse("ACCESS_TOKEN_TTL", "15m", parse_duration)?,
            refresh_token_ttl: src.parse("REFRESH_TOKEN_TTL", "24h", parse_duration)?,
            cors_allowed_origins: src.parse("CORS_ALLOWED_ORIGINS", "", |raw| Ok(list(raw)))?,
            trusted_proxies: src.parse("TRUSTED_PROXIES", "", |raw| {
                list(raw)
                    .iter()
                    .map(|ip| {
                        ip.parse().map_err(|_| {
                            format!("must be comma-separated IP addresses, got {ip:?}")
                        })
                    })
                    .collect()
            })?,
            auth_rate_limit_per_minute: src.parse("AUTH_RATE_LIMIT_PER_MINUTE", "30", |raw| {
                raw.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("must be a positive number, got {raw:?}"))
            })?,
            request_timeout: src.parse("REQUEST_TIMEOUT", "10s", parse_duration)?,
            body_limit_bytes: src.parse("BODY_LIMIT_BYTES", "65536", |raw| {
                raw.parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("must be a positive number of bytes, got {raw:?}"))
            })?,
            connections: crate::conn::ConnectionLimits {
                header_read_timeout: src.parse("HEADER_READ_TIMEOUT", "10s", positive_duration)?,
                idle_timeout: src.parse("IDLE_TIMEOUT", "60s", positive_duration)?,
                write_timeout: src.parse("WRITE_TIMEOUT", "30s", positive_duration)?,
                max_connections: src.parse("MAX_CONNECTIONS", "2048", |raw| {
                    raw.parse()
                        .ok()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| format!("must be a positive number, got {raw:?}"))
                })?,
                max_connections_per_client: src.parse(
                    "MAX_CONNECTIONS_PER_CLIENT",
                    "256",
                    |raw| {
                        raw.parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| format!("must be a positive number, got {raw:?}"))
                    },
                )?,
            },
            app_env,
            using_development_key,
        })
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
        assert_eq!(defaults.connections.max_connections, 2048);
        assert_eq!(defaults.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(defaults.connections.write_timeout, Duration::from_secs(30));
        assert_eq!(defaults.connections.max_connections_per_client, 256);
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
        assert_eq!(defaults.gateway_upstream, None);
        let upstream = config(&[("GATEWAY_UPSTREAM", "localhost:9090")]).expect_err("upstream");
        assert!(
            upstream
                .to_string()
                .starts_with("GATEWAY_UPSTREAM must be an http:// URL"),
            "{upstream}"
        );
        assert_eq!(defaults.token_kind, "paseto");
        assert!(defaults.using_development_key);

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

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1.5h").is_err());
    }
}
