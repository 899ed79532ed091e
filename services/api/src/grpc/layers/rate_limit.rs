//! Per-client-IP rate limits on the methods that create users and sessions.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::{Request, Response};

use super::super::error;
use super::{Answer, Around, Inner, Payload, client_addr};
use crate::contract::Reason;

/// The methods limited per client IP (as REST limits `POST /v1/users` and `POST /v1/sessions`).
pub const RATE_LIMITED_METHODS: &[&str] = &[
    "/streambank.v1.UserService/CreateUser",
    "/streambank.v1.UserService/Login",
];

/// Counts [`RATE_LIMITED_METHODS`] calls against the client's budget, the one REST draws on too
/// ([`crate::state::AuthRateLimiter`]).
#[derive(Debug, Clone)]
pub struct RateLimit {
    limiter: crate::state::AuthRateLimiter,
    trusted_proxies: Arc<[IpAddr]>,
}

impl RateLimit {
    pub fn new(limiter: crate::state::AuthRateLimiter, trusted_proxies: &[IpAddr]) -> Self {
        Self {
            limiter,
            trusted_proxies: trusted_proxies.into(),
        }
    }
}

impl Around for RateLimit {
    fn around<S: Inner<B, R>, B: Payload, R: Payload + Default>(
        &self,
        mut inner: S,
        request: Request<B>,
    ) -> Answer<R, S::Error> {
        if RATE_LIMITED_METHODS.contains(&request.uri().path()) {
            let ip = client_addr(
                request.extensions(),
                request.headers(),
                &self.trusted_proxies,
            );
            if let Some(ip) = ip
                && let Err(wait) = self.limiter.check(ip)
            {
                let mut response: Response<R> = error::refusal(
                    Reason::RateLimited,
                    format!("too many requests; retry after {wait} s"),
                    &[],
                )
                .into_http();
                response
                    .headers_mut()
                    .insert("retry-after", axum::http::HeaderValue::from(wait));
                return Box::pin(std::future::ready(Ok(response)));
            }
        }
        Box::pin(inner.call(request))
    }
}
