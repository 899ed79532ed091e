//! The tower layers every gRPC call passes through, so that no method repeats them: authentication
//! and per-IP rate limits here; request ids, tracing, timeouts and panic recovery are assembled with
//! these in [`super::serve`].
//!
//! Authentication is a layer rather than a tonic interceptor because checking a session may ask
//! Postgres (an interceptor is synchronous). It runs the same `Sessions::authenticate` as REST and
//! leaves the caller in the request's extensions, where [`caller`] finds it.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{HeaderMap, Request, Response};
use streambank_domain::FieldViolation;
use streambank_service::{Authenticated, Error, Sessions};
use tonic::Status;
use tower::{Layer, Service};

use super::error;
use super::peer::Peer;
use crate::contract::Reason;
use crate::contract::client::{client_ip, forwarded};

pub use crate::contract::PUBLIC_METHODS;

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
/// proxy: this process's own gateway always ([`Peer::Gateway`]), another when `TRUSTED_PROXIES` lists it.
pub fn client_addr(
    extensions: &axum::http::Extensions,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    match extensions.get::<Peer>() {
        Some(Peer::Tcp(peer)) => client_ip(peer.map(|a| a.ip()), headers, trusted),
        // The gateway appends its own caller's socket address last: the peer it stands in for. (It
        // always does; were it missing, the gateway's own address would stand for all its callers.)
        Some(Peer::Gateway(gateway)) => client_ip(
            forwarded(headers).next_back().or(Some(gateway.ip())),
            headers,
            trusted,
        ),
        None => None,
    }
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
            error::refusal(
                Reason::TokenMissing,
                "the Authorization header must be `Bearer <access token>`",
                &[],
            )
        })?;
    sessions.authenticate(token).await.map_err(error::status)
}

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

/// Counts every call by method and status code, and times it (into the API's Prometheus registry).
/// Unary methods put a failure's `grpc-status` in the response headers (trailers-only), a success's in
/// the trailers, so a response without one in its headers is `OK`. A path that is not one of
/// StreamBank's methods, health or reflection is counted as `unknown`, so that clients cannot grow
/// the number of series.
#[derive(Debug, Clone)]
pub struct MetricsLayer {
    metrics: crate::contract::metrics::ApiMetrics,
    known: Arc<std::collections::HashSet<String>>,
}

impl MetricsLayer {
    pub fn new(metrics: crate::contract::metrics::ApiMetrics) -> Self {
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
    metrics: crate::contract::metrics::ApiMetrics,
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
            let elapsed = started.elapsed();
            metrics.grpc_requests.inc(&[&method, &format!("{code:?}")]);
            metrics.grpc_latency.observe_duration(&[&method], elapsed);
            log_call(&method, code, elapsed);
            Ok(response)
        })
    }
}

/// The codes that say the caller asked for something it may not have (REST's 4xx).
const REFUSALS: [tonic::Code; 11] = [
    tonic::Code::Cancelled,
    tonic::Code::InvalidArgument,
    tonic::Code::NotFound,
    tonic::Code::AlreadyExists,
    tonic::Code::PermissionDenied,
    tonic::Code::ResourceExhausted,
    tonic::Code::FailedPrecondition,
    tonic::Code::Aborted,
    tonic::Code::OutOfRange,
    tonic::Code::Unimplemented,
    tonic::Code::Unauthenticated,
];

/// The call's one log line, inside its span (so that the log formatter can attach the trace id): the
/// method (`/package.Service/Method`, or `unknown`), the `grpc-status` when the answer's headers carry
/// it (an error; a success carries it in the trailers) and the latency until those headers, in
/// milliseconds. An answer and a refusal (a caller's fault, REST's 4xx) are INFO; any other code
/// (Unknown, DeadlineExceeded, Internal, Unavailable, DataLoss: REST's 5xx) is an ERROR (issue 19).
fn log_call(method: &str, code: tonic::Code, elapsed: Duration) {
    let latency_ms = (elapsed.as_secs_f64() * 100_000.0).round() / 100.0;
    let status = code as i32;
    if code == tonic::Code::Ok {
        tracing::info!(
            rpc.method = method,
            grpc.status = status,
            latency_ms,
            "call answered"
        );
    } else if REFUSALS.contains(&code) {
        tracing::info!(rpc.method = method, grpc.status = status, code = ?code, latency_ms, "call refused");
    } else {
        tracing::error!(rpc.method = method, grpc.status = status, code = ?code, latency_ms, "call failed");
    }
}

/// Bounds every call by `REQUEST_TIMEOUT`, or by the caller's `grpc-timeout` when that is sooner.
/// tonic's own `Server::timeout` runs outside the layers (so neither the metrics nor the request id saw
/// a call it cut short) and answers both cases `Cancelled`, with no details. Here the server's own
/// limit is `Unavailable` with reason `TIMEOUT`, as REST answers it (and so the gateway answers a slow
/// upstream as REST does), and the caller's deadline is `DeadlineExceeded`, as gRPC's status-code
/// document says. A `grpc-timeout` that does not parse is ignored, as tonic ignores it.
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    limit: Duration,
}

impl DeadlineLayer {
    pub fn new(limit: Duration) -> Self {
        Self { limit }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

impl<S, B, R> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let callers = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| grpc_timeout(v.as_bytes()))
            .filter(|d| *d < self.limit);
        let limit = callers.unwrap_or(self.limit);
        let response = tokio::time::timeout(limit, self.inner.call(request));
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

/// tonic answers some requests it cannot read or route with a bare status and its own text, before
/// any method runs; this layer gives those answers the contract's shape, following gRPC's status-code
/// document where it speaks:
///
/// - bytes that are not the method's protobuf message (a wrong type, invalid UTF-8 in a string, a
///   truncated varint) are the caller's mistake: `InvalidArgument`, reason `MALFORMED_REQUEST`, with
///   the field when prost names one, as REST answers a body it cannot parse;
/// - a unary call with no request message is a cardinality violation: `Unimplemented`, reason
///   `REQUEST_CARDINALITY`;
/// - a broken frame (a compressed flag without `grpc-encoding`, a stream that ends inside a frame) is a
///   protocol violation, which the gRPC documents answer `Internal`: it stays `Internal`, with tonic's
///   message and reason `PROTOCOL_ERROR`, so that it cannot be mistaken for a fault of ours;
/// - a message over the size limit is `ResourceExhausted` (tonic says `OutOfRange`), reason
///   `MESSAGE_TOO_LARGE`;
/// - a path that names no method stays `Unimplemented`, with a message naming it and reason
///   `METHOD_NOT_FOUND`; a compression the server does not support stays `Unimplemented`, reason
///   `COMPRESSION_UNSUPPORTED`.
///
/// StreamBank's own statuses always carry an `ErrorInfo` (`grpc-status-details-bin`), so a detail-less
/// status in the response headers is tonic's (or health's and reflection's, which are left alone).
/// Such answers are trailers-only, so the headers are all there is to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnreadableRequestLayer;

impl<S> Layer<S> for UnreadableRequestLayer {
    type Service = UnreadableRequest<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnreadableRequest { inner }
    }
}

#[derive(Debug, Clone)]
pub struct UnreadableRequest<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for UnreadableRequest<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers();
            if headers.contains_key(Status::GRPC_STATUS_DETAILS) {
                return Ok(response);
            }
            let Some(status) = Status::from_header_map(headers).and_then(|s| restate(&s, &path))
            else {
                return Ok(response);
            };
            let restated = status.into_http::<R>();
            let headers = response.headers_mut();
            for name in [
                Status::GRPC_STATUS,
                Status::GRPC_MESSAGE,
                Status::GRPC_STATUS_DETAILS,
            ] {
                headers.remove(name);
            }
            headers.extend(restated.into_parts().0.headers);
            Ok(response)
        })
    }
}

/// The contract's status for one of tonic's detail-less answers to a call of `path` (see
/// [`UnreadableRequestLayer`]), or `None` for a status that is not one of them.
pub fn restate(status: &Status, path: &str) -> Option<Status> {
    let message = status.message();
    match status.code() {
        tonic::Code::Internal => Some(restate_internal(message)),
        // The status-code document: a message larger than the configured limit is RESOURCE_EXHAUSTED.
        tonic::Code::OutOfRange
            if message.starts_with("Error, decoded message length too large") =>
        {
            Some(error::refusal(
                Reason::MessageTooLarge,
                format!("the request message is larger than the server accepts: {message}"),
                &[],
            ))
        }
        // The status-code document: a compression the server does not support is UNIMPLEMENTED; tonic
        // lists what it accepts in `grpc-accept-encoding`, which stays in the headers.
        tonic::Code::Unimplemented if message.starts_with("Content is compressed with") => {
            Some(error::refusal(Reason::CompressionUnsupported, message, &[]))
        }
        // The router's fallback for a path that names no method.
        tonic::Code::Unimplemented if message.is_empty() => Some(error::refusal(
            Reason::MethodNotFound,
            format!("no method {path}; the server's reflection service lists the methods"),
            &[],
        )),
        _ => None,
    }
}

fn restate_internal(message: &str) -> Status {
    if let Some(decode) = message.strip_prefix("failed to decode Protobuf message: ") {
        // prost writes `Message.field: ` for each level, innermost first, then what was wrong.
        let mut rest = decode;
        let mut fields = Vec::new();
        while let Some((level, tail)) = rest.split_once(": ")
            && let Some((_, field)) = level.split_once('.')
            && !level.contains(' ')
        {
            fields.push(field);
            rest = tail;
        }
        fields.reverse();
        let violations: Vec<FieldViolation> = if fields.is_empty() {
            Vec::new()
        } else {
            vec![FieldViolation {
                field: fields.join("."),
                description: rest.to_owned(),
            }]
        };
        return error::refusal(
            Reason::MalformedRequest,
            format!("the request is not a valid protobuf message of the method's type: {decode}"),
            &violations,
        );
    }
    if message == "Missing request message." {
        return error::refusal(
            Reason::RequestCardinality,
            "a unary method takes exactly one request message, and the call sent none",
            &[],
        );
    }
    error::refusal(Reason::ProtocolError, message, &[])
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

    #[test]
    fn tonics_bare_internals_are_restated_in_the_contract() {
        use tonic_types::StatusExt as _;

        let utf8 = restate_internal(
            "failed to decode Protobuf message: LoginRequest.username: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(utf8.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            utf8.get_details_error_info().expect("info").reason,
            "MALFORMED_REQUEST"
        );
        let violations = utf8
            .get_details_bad_request()
            .expect("bad request")
            .field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "username");
        assert_eq!(
            violations[0].description,
            "invalid string value: data is not UTF-8 encoded"
        );

        // Innermost level first in prost's text, so the path is read backwards.
        let nested = restate_internal(
            "failed to decode Protobuf message: Money.currency: Deposit.amount: invalid string value: data is not UTF-8 encoded",
        );
        let violations = nested
            .get_details_bad_request()
            .expect("bad request")
            .field_violations;
        assert_eq!(violations[0].field, "amount.currency");

        let varint = restate_internal("failed to decode Protobuf message: invalid varint");
        assert_eq!(varint.code(), tonic::Code::InvalidArgument);
        assert!(varint.get_details_bad_request().is_none());

        let none = restate_internal("Missing request message.");
        assert_eq!(none.code(), tonic::Code::Unimplemented);
        assert_eq!(
            none.get_details_error_info().expect("info").reason,
            "REQUEST_CARDINALITY"
        );

        let frame = restate_internal("Unexpected EOF decoding stream.");
        assert_eq!(frame.code(), tonic::Code::Internal);
        assert_eq!(frame.message(), "Unexpected EOF decoding stream.");
        assert_eq!(
            frame.get_details_error_info().expect("info").reason,
            "PROTOCOL_ERROR"
        );

        let path = "/streambank.v1.UserService/Login";
        let large = restate(
            &Status::out_of_range(
                "Error, decoded message length too large: found 4194305 bytes, the limit is: 4194304 bytes",
            ),
            path,
        )
        .expect("restated");
        assert_eq!(large.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            large.get_details_error_info().expect("info").reason,
            "MESSAGE_TOO_LARGE"
        );
        let unknown = restate(&Status::unimplemented(""), "/a.B/C").expect("restated");
        assert_eq!(unknown.code(), tonic::Code::Unimplemented);
        assert!(
            unknown.message().contains("/a.B/C"),
            "{}",
            unknown.message()
        );
        let gzip = restate(
            &Status::unimplemented("Content is compressed with `gzip` which isn't supported"),
            path,
        )
        .expect("restated");
        assert_eq!(gzip.code(), tonic::Code::Unimplemented);
        assert_eq!(
            gzip.get_details_error_info().expect("info").reason,
            "COMPRESSION_UNSUPPORTED"
        );
        // Anything else is left as it is.
        assert!(restate(&Status::not_found("unknown service"), path).is_none());
        assert!(restate(&Status::out_of_range("page 7"), path).is_none());
    }

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
