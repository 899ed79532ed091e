//! The tower layers every gRPC call passes through, so that no method repeats them: authentication
//! and per-IP rate limits here; request ids, tracing, timeouts and panic recovery are assembled with
//! these in [`super::serve`].
//!
//! Authentication is a layer rather than a tonic interceptor because checking a session may ask
//! Postgres (an interceptor is synchronous). It runs the same `Sessions::authenticate` as REST and
//! leaves the caller in the request's extensions, where [`caller`] finds it.

use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::http::{HeaderMap, Request, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use streambank_service::{Authenticated, Error, Sessions};
use tonic::Status;
use tonic::transport::server::TcpConnectInfo;
use tower::{Layer, Service};

use super::error;
use crate::rest::extract::client_ip;

/// The methods anyone may call without a token. Every other `streambank.v1` method needs one.
/// (Reflection and health are other packages, and public.)
pub const PUBLIC_METHODS: &[&str] = &[
    "/streambank.v1.UserService/CreateUser",
    "/streambank.v1.UserService/VerifyEmail",
    "/streambank.v1.UserService/Login",
    "/streambank.v1.UserService/Refresh",
];

/// The methods limited per client IP (as REST limits `POST /v1/users` and `POST /v1/sessions`).
pub const RATE_LIMITED_METHODS: &[&str] = &[
    "/streambank.v1.UserService/CreateUser",
    "/streambank.v1.UserService/Login",
];

/// Whether a call to `path` (`/package.Service/Method`) must carry an access token.
pub fn requires_token(path: &str) -> bool {
    path.starts_with("/streambank.v1.") && !PUBLIC_METHODS.contains(&path)
}

/// The authenticated caller of a protected method (the auth layer put it there).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Authenticated, Status> {
    request
        .extensions()
        .get::<Authenticated>()
        .copied()
        .ok_or_else(|| error::status(Error::TokenInvalid))
}

/// The client's address: the socket's peer, or what `x-forwarded-for` says when the peer is a trusted
/// proxy (the gateway, in a deployment that lists it in `TRUSTED_PROXIES`).
pub fn client_addr(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .map(|a| a.ip());
    client_ip(peer, headers, trusted)
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Checks the bearer token of every protected call.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    sessions: Sessions,
}

impl AuthLayer {
    pub fn new(sessions: Sessions) -> Self {
        Self { sessions }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            sessions: self.sessions.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    sessions: Sessions,
}

impl<S, B, R> Service<Request<B>> for Auth<S>
where
    S: Service<Request<B>, Response = Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // The clone that was polled ready serves this call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let sessions = self.sessions.clone();
        Box::pin(async move {
            if requires_token(request.uri().path()) {
                match authenticate(&sessions, request.headers()).await {
                    Ok(who) => {
                        request.extensions_mut().insert(who);
                    }
                    Err(status) => return Ok(status.into_http()),
                }
            }
            inner.call(request).await
        })
    }
}

async fn authenticate(sessions: &Sessions, headers: &HeaderMap) -> Result<Authenticated, Status> {
    let token =
        streambank_auth::bearer_token(headers.get("authorization").and_then(|v| v.to_str().ok()))
            .ok_or_else(|| {
            error::with_reason(
                tonic::Code::Unauthenticated,
                "the Authorization header must be `Bearer <access token>`",
                "TOKEN_MISSING",
                &[],
            )
        })?;
    sessions.authenticate(token).await.map_err(error::status)
}

/// `per_minute` calls per client IP per minute (bursts of the same size) on [`RATE_LIMITED_METHODS`].
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    trusted_proxies: Arc<[IpAddr]>,
}

impl RateLimitLayer {
    pub fn new(per_minute: u32, trusted_proxies: &[IpAddr]) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: Arc::new(RateLimiter::keyed(Quota::per_minute(per_minute))),
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
                && let Err(not_until) = self.layer.limiter.check_key(&ip)
            {
                let wait = not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_secs()
                    .max(1);
                let mut response: Response<R> = error::with_reason(
                    tonic::Code::ResourceExhausted,
                    format!("too many requests; retry after {wait} s"),
                    "RATE_LIMITED",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_methods_are_listed_once_and_everything_else_needs_a_token() {
        for path in PUBLIC_METHODS {
            assert!(!requires_token(path), "{path}");
        }
        assert!(requires_token("/streambank.v1.AccountService/GetAccount"));
        assert!(requires_token("/streambank.v1.UserService/Logout"));
        assert!(!requires_token("/grpc.health.v1.Health/Check"));
        assert!(!requires_token(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
        ));
    }
}

/// Counts every call by method and status code, and times it (into the API's Prometheus registry).
/// Unary methods put a failure's `grpc-status` in the response headers (trailers-only), a success's in
/// the trailers, so a response without one in its headers is `OK`. A path that is not one of
/// StreamBank's methods, health or reflection is counted as `unknown`, so that clients cannot grow
/// the number of series.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: crate::rest::metrics::ApiMetrics,
    known: Arc<std::collections::HashSet<String>>,
}

impl MetricsLayer {
    pub fn new(metrics: crate::rest::metrics::ApiMetrics) -> Self {
        let pool = streambank_proto::descriptor_pool();
        let mut known: std::collections::HashSet<String> = streambank_proto::SERVICES
            .iter()
            .filter_map(|name| pool.get_service_by_name(name))
            .flat_map(|service| {
                service
                    .methods()
                    .map(|m| format!("/{}/{}", service.full_name(), m.name()))
                    .collect::<Vec<_>>()
            })
            .collect();
        known.extend(
            [
                "/grpc.health.v1.Health/Check",
                "/grpc.health.v1.Health/Watch",
                "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            ]
            .map(str::to_owned),
        );
        Self {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl<S> Layer<S> for MetricsLayer {
    type Service = Metrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Metrics {
            inner,
            metrics: self.metrics.clone(),
            known: Arc::clone(&self.known),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Metrics<S> {
    inner: S,
    metrics: crate::rest::metrics::ApiMetrics,
    known: Arc<std::collections::HashSet<String>>,
}

impl<S, B, ResBody> Service<Request<B>> for Metrics<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path();
        let method = if self.known.contains(path) {
            path.to_owned()
        } else {
            "unknown".to_owned()
        };
        let metrics = self.metrics.clone();
        let started = std::time::Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map_or(tonic::Code::Ok, tonic::Code::from_i32);
            metrics.grpc_requests.inc(&[&method, &format!("{code:?}")]);
            metrics
                .grpc_latency
                .observe_duration(&[&method], started.elapsed());
            Ok(response)
        })
    }
}
