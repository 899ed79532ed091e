//! Parsers for the values variables take, each failing with the words that follow the variable's name in
//! the one-line error (`HTTP_ADDR must be an address such as 0.0.0.0:8080, got "localhost"`).

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// A number above zero.
pub fn positive<T>(raw: &str) -> Result<T, String>
where
    T: FromStr + PartialOrd + Default,
{
    raw.parse()
        .ok()
        .filter(|n: &T| *n > T::default())
        .ok_or_else(|| format!("must be a positive number, got {raw:?}"))
}

/// A number of stream partitions: 1 to [`MAX_PARTITIONS`].
pub fn partitions(raw: &str) -> Result<u16, String> {
    raw.parse()
        .ok()
        .filter(|n| (1..=MAX_PARTITIONS).contains(n))
        .ok_or_else(|| format!("must be a whole number from 1 to {MAX_PARTITIONS}, got {raw:?}"))
}

/// The most stream partitions a deployment may have.
pub const MAX_PARTITIONS: u16 = 1024;

/// A socket address such as `0.0.0.0:8080`.
pub fn socket_addr(raw: &str) -> Result<SocketAddr, String> {
    raw.parse()
        .map_err(|_| format!("must be an address such as 0.0.0.0:8080, got {raw:?}"))
}

/// A `postgres://` or `postgresql://` URL.
pub fn postgres_url(raw: &str) -> Result<String, String> {
    if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
        Ok(raw.to_owned())
    } else {
        Err("must be a postgres:// URL".to_owned())
    }
}

/// A `redis://`, `rediss://` or `redis+unix://` URL.
pub fn redis_url(raw: &str) -> Result<String, String> {
    // Several comma-separated URLs are the seed nodes of a Redis Cluster (`streambank-bus`).
    let valid = |url: &str| {
        [
            "redis://",
            "rediss://",
            "redis+unix://",
            "unix://",
            "redis+cluster://",
        ]
        .iter()
        .any(|scheme| url.trim().starts_with(scheme))
    };
    if raw.split(',').all(valid) {
        Ok(raw.to_owned())
    } else {
        Err(format!(
            "is not a Redis URL (redis://host:port), nor a comma-separated list of a Redis Cluster's \
             nodes, got {raw:?}"
        ))
    }
}

/// An `http://` or `https://` URL with a host, without a trailing slash.
pub fn http_url(raw: &str) -> Result<String, String> {
    let rest = raw
        .strip_prefix("http://")
        .or_else(|| raw.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => {
            Ok(raw.trim_end_matches('/').to_owned())
        }
        _ => Err(format!("must be an http:// URL with a host, got {raw:?}")),
    }
}

/// A comma-separated list; blanks are dropped.
pub fn list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A comma-separated list of IP addresses.
pub fn ip_list(raw: &str) -> Result<Vec<IpAddr>, String> {
    list(raw)
        .iter()
        .map(|ip| {
            ip.parse()
                .map_err(|_| format!("must be comma-separated IP addresses, got {ip:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(positive::<u32>("3"), Ok(3));
        assert!(positive::<u32>("0").is_err());
        assert!(positive::<i64>("-2").is_err());
        assert!(socket_addr("localhost").is_err());
        assert!(postgres_url("mysql://x").is_err());
        assert!(redis_url("127.0.0.1:6379").is_err());
        assert!(redis_url("redis://10.0.0.1:6379,redis://10.0.0.2:6379").is_ok());
        assert!(redis_url("redis+cluster://10.0.0.1:6379").is_ok());
        assert!(redis_url("redis://10.0.0.1:6379,10.0.0.2:6379").is_err());
        assert_eq!(partitions("8"), Ok(8));
        assert!(partitions("0").is_err());
        assert!(partitions("1025").is_err());
        assert_eq!(
            http_url("http://localhost:8080/"),
            Ok("http://localhost:8080".to_owned())
        );
        assert!(http_url("localhost:8080").is_err());
        assert_eq!(list(" a, ,b "), vec!["a".to_owned(), "b".to_owned()]);
        assert!(ip_list("127.0.0.1, nope").is_err());
    }
}
