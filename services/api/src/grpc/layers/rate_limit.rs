//! Per-client-IP rate limits on the methods that create users and sessions.

use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{Request, Response};
use tower::{Layer, Service};

use super::super::error;
use super::{BoxFuture, client_addr};
use crate::contract::Reason;

/// The methods limited per client IP (as REST limits `POST /v1/users` and `POST /v1/sessions`).
pub const RATE_LIMITED_METHODS: &[&str] = &[
    "/streambank.v1.UserService/CreateUser",
    "/streambank.v1.UserService/Login",
];

/// Counts [`RATE_LIMITED_METHODS`] calls against the client's budget, the one REST draws on too
/// ([`crate::state::AuthRateLimiter`]).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: crate::state::AuthRateLimiter,
    trusted_proxies: Arc<[IpAddr]>,
}

impl RateLimitLayer {
    pub fn new(limiter: crate::state::AuthRateLimiter, trusted_proxies: &[IpAddr]) -> Self {
        Self {
            limiter,
            trusted_proxies: trusted_proxies.into(),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RateLimit<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S, B, R> Service<Request<B>> for RateLimit<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if RATE_LIMITED_METHODS.contains(&request.uri().path()) {
            let ip = client_addr(
                request.extensions(),
                request.headers(),
                &self.layer.trusted_proxies,
            );
            if let Some(ip) = ip
                && let Err(wait) = self.layer.limiter.check(ip)
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
        Box::pin(self.inner.call(request))
    }
}
