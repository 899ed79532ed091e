//! Deadlines: the server's own and the caller's `grpc-timeout`.

use std::time::Duration;

use axum::http::Request;

use super::super::error;
use super::{Answer, Around, Inner, Payload};
use crate::contract::Reason;

/// Bounds every call by `REQUEST_TIMEOUT`, or by the caller's `grpc-timeout` when that is sooner.
/// tonic's own `Server::timeout` runs outside the layers (so neither the metrics nor the request id saw
/// a call it cut short) and answers both cases `Cancelled`, with no details. Here the server's own
/// limit is `Unavailable` with reason `TIMEOUT`, as REST answers it (and so the gateway answers a slow
/// upstream as REST does), and the caller's deadline is `DeadlineExceeded`, as gRPC's status-code
/// document says. A `grpc-timeout` that does not parse is ignored, as tonic ignores it.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    limit: Duration,
}

impl Deadline {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl Around for Deadline {
    fn around<S: Inner<B, R>, B: Payload, R: Payload + Default>(
        &self,
        mut inner: S,
        request: Request<B>,
    ) -> Answer<R, S::Error> {
        let callers = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| grpc_timeout(v.as_bytes()))
            .filter(|d| *d < self.limit);
        let limit = callers.unwrap_or(self.limit);
        let response = tokio::time::timeout(limit, inner.call(request));
        Box::pin(async move {
            match response.await {
                Ok(response) => response,
                Err(_elapsed) => Ok(match callers {
                    Some(_) => error::refusal(
                        Reason::DeadlineExceeded,
                        "the call's deadline (grpc-timeout) passed before it finished",
                        &[],
                    ),
                    None => error::refusal(Reason::Timeout, "the request took too long", &[]),
                }
                .into_http()),
            }
        })
    }
}

/// A `grpc-timeout` value: at most eight digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
pub fn grpc_timeout(raw: &[u8]) -> Option<Duration> {
    let (unit, digits) = raw.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_the_protocol_writes_them() {
        assert_eq!(grpc_timeout(b"1H"), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(b"2M"), Some(Duration::from_secs(120)));
        assert_eq!(grpc_timeout(b"3S"), Some(Duration::from_secs(3)));
        assert_eq!(grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
        assert_eq!(
            grpc_timeout(b"99999999u"),
            Some(Duration::from_micros(99_999_999))
        );
        assert_eq!(grpc_timeout(b"1n"), Some(Duration::from_nanos(1)));
        for bad in [
            &b""[..],
            b"S",
            b"abc",
            b"123456789S",
            b"10s",
            b"-1S",
            b"1.5S",
        ] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
