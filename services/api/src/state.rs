//! What every request handler shares.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use streambank_service::{Bank, Sessions};

#[derive(Debug, Clone)]
pub struct AppState {
    pub bank: Bank,
    pub sessions: Sessions,
    pub redis: streambank_bus::Bus,
    pub trusted_proxies: Vec<IpAddr>,
    pub body_limit_bytes: usize,
    pub metrics: crate::contract::metrics::ApiMetrics,
    pub auth_limiter: AuthRateLimiter,
}

/// Logins and registrations per client IP: one budget per address for the whole process, which REST
/// and the gRPC server (and so the gateway, whose calls carry their client's address) all draw on.
/// Per transport, one address had `AUTH_RATE_LIMIT_PER_MINUTE` guesses on each (issue 22).
#[derive(Debug, Clone)]
pub struct AuthRateLimiter(Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl AuthRateLimiter {
    /// `per_minute` attempts per client IP per minute, with bursts of up to the same number.
    pub fn new(per_minute: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self(Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))))
    }

    /// Counts one attempt from `ip`; over the budget, how many seconds until the next is allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.0.check_key(&ip).map_err(|not_until| {
            not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1)
        })
    }
}
