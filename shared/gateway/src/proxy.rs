//! The one handler behind every gateway route: look the request up in the route table, build the
//! request message, call the gRPC method over the upstream channel with the caller's headers as
//! metadata, and answer with the response as JSON (or the status as the contract's error).
//!
//! The headers that matter to the gRPC server travel as metadata: `authorization`, `idempotency-key`,
//! `x-request-id` (set by the router's request-id layer when the caller sent none), `user-agent`,
//! `traceparent` (replaced by the gateway span's own when traces are exported, so the gRPC call is its
//! child) and `accept`. `x-forwarded-for` is the caller's own chain with the socket peer
//! appended, so that a gRPC server that trusts the gateway as a proxy sees the real client address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::codec::DynamicCodec;
use super::error::{ErrorBody, Failure, GatewayError, RequestError};
use super::request::{self, Parts};
use super::response;
use super::routes::{Body, Lookup, Route, RouteTable};
use super::template::Captures;

/// The request headers forwarded as gRPC metadata, under the same names.
pub const FORWARDED_HEADERS: [&str; 6] = [
    "authorization",
    "idempotency-key",
    "x-request-id",
    "user-agent",
    "traceparent",
    "accept",
];

/// The route template a request matched, in its response's extensions (for the server's request
/// log and metrics: a template, never the path with its ids).
#[derive(Debug, Clone)]
pub struct MatchedRoute(pub String);

/// What every call shares: the route table, the channel to the gRPC server and the error body.
#[derive(Debug)]
pub struct Gateway {
    routes: RouteTable,
    upstream: Channel,
    body_limit_bytes: usize,
    errors: Arc<dyn ErrorBody>,
}

impl Gateway {
    pub fn new(
        routes: RouteTable,
        upstream: Channel,
        body_limit_bytes: usize,
        errors: Arc<dyn ErrorBody>,
    ) -> Self {
        Self {
            routes,
            upstream,
            body_limit_bytes,
            errors,
        }
    }

    /// The answer to `request`, in which the matched route template travels as [`MatchedRoute`]. The
    /// `route` field of the caller's span (`outer`) is set to it, or to `unmatched`.
    async fn answer(&self, request: Request, outer: tracing::Span) -> Response {
        let (route, captures) = match self.routes.lookup(request.method(), request.uri().path()) {
            Lookup::Found(route, captures) => {
                outer.record("route", route.template.as_str());
                (route, captures)
            }
            Lookup::MethodNotAllowed(allow) => {
                outer.record("route", "unmatched");
                let mut response = self
                    .errors
                    .respond(Failure::Request(RequestError::MethodNotAllowed));
                if let Ok(allow) = HeaderValue::from_str(&allow) {
                    response.headers_mut().insert(header::ALLOW, allow);
                }
                return response;
            }
            Lookup::NotFound => {
                outer.record("route", "unmatched");
                return self
                    .errors
                    .respond(Failure::Request(RequestError::RouteNotFound));
            }
        };
        let mut response = match self.call(route, captures, request).await {
            Ok(response) => response,
            Err(e) => e.respond(self.errors.as_ref()),
        };
        response
            .extensions_mut()
            .insert(MatchedRoute(route.template.as_str().to_owned()));
        response
    }

    #[tracing::instrument(name = "Transcoding an HTTP request to a gRPC call", skip_all, fields(rpc.method = tracing::field::Empty))]
    async fn call(
        &self,
        route: &Route,
        captures: Captures,
        request: Request,
    ) -> Result<Response, GatewayError> {
        tracing::Span::current().record("rpc.method", route.grpc_path.as_str());
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        let mut metadata = metadata(request.headers(), peer)?;
        // The call continues this request's trace as a child of the gateway's own span (which itself
        // continues the caller's `traceparent`), when tracing exports at all.
        if let Some(traceparent) = streambank_telemetry::current_traceparent()
            .and_then(|t| t.parse::<tonic::metadata::AsciiMetadataValue>().ok())
        {
            metadata.insert("traceparent", traceparent);
        }
        let query = request.uri().query().map(str::to_owned);
        let body = match route.body {
            Body::None => None,
            Body::Whole | Body::Field(_) => Some(self.read_json(request).await?),
        };
        let message = request::message(
            route,
            Parts {
                captures: &captures,
                query: query.as_deref(),
                body: body.as_deref(),
            },
        )?;

        let mut grpc = tonic::client::Grpc::new(self.upstream.clone());
        grpc.ready()
            .await
            .map_err(|e| GatewayError::Unreachable(e.to_string()))?;
        let call = tonic::Request::from_parts(metadata, Default::default(), message);
        let answer = grpc
            .unary(call, route.grpc_path.clone(), DynamicCodec)
            .await
            .map_err(GatewayError::Upstream)?;
        response::success(route, answer.into_inner()).map_err(GatewayError::Encode)
    }

    /// The body of a route that has one, exactly as REST's `ApiJson` reads it: JSON only, and no more
    /// than the body limit (the router's `DefaultBodyLimit`).
    async fn read_json(&self, request: Request) -> Result<Bytes, RequestError> {
        if !is_json(request.headers()) {
            return Err(RequestError::malformed(
                "body",
                "send JSON with Content-Type: application/json",
            ));
        }
        Bytes::from_request(request, &())
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    RequestError::BodyTooLarge {
                        limit: self.body_limit_bytes,
                    }
                } else {
                    RequestError::malformed("body", "the body could not be read")
                }
            })
    }
}

/// The gateway's only handler (the router's fallback).
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    gateway.answer(request, tracing::Span::current()).await
}

/// Whether the request says its body is JSON (`Content-Type: application/json`, parameters allowed).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
}

/// The forwarded headers as metadata. A header that is not visible ASCII is dropped, as REST ignores
/// it, except `idempotency-key`, which REST rejects.
pub fn metadata(headers: &HeaderMap, peer: Option<IpAddr>) -> Result<MetadataMap, RequestError> {
    let mut out = HeaderMap::new();
    for name in FORWARDED_HEADERS {
        for value in headers.get_all(name) {
            if value.to_str().is_err() {
                if name == "idempotency-key" {
                    return Err(RequestError::malformed(
                        "Idempotency-Key",
                        "must be visible ASCII",
                    ));
                }
                continue;
            }
            out.append(HeaderName::from_static(name), value.clone());
        }
    }
    let mut chain: Vec<String> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|hop| !hop.is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(peer) = peer {
        chain.push(peer.to_string());
    }
    if !chain.is_empty()
        && let Ok(value) = HeaderValue::from_str(&chain.join(", "))
    {
        out.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    Ok(MetadataMap::from_headers(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_become_metadata_and_the_peer_joins_the_forwarded_chain() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer abc"));
        headers.insert("idempotency-key", HeaderValue::from_static("k-1"));
        headers.insert("x-request-id", HeaderValue::from_static("req-1"));
        headers.insert("user-agent", HeaderValue::from_static("curl/8"));
        headers.insert("cookie", HeaderValue::from_static("secret=1"));
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.2"),
        );
        let peer: IpAddr = "127.0.0.1".parse().expect("ip");
        let metadata = metadata(&headers, Some(peer)).expect("metadata");
        assert_eq!(
            metadata.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer abc")
        );
        assert_eq!(
            metadata
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok()),
            Some("k-1")
        );
        assert_eq!(
            metadata.get("x-request-id").and_then(|v| v.to_str().ok()),
            Some("req-1")
        );
        assert_eq!(
            metadata.get("user-agent").and_then(|v| v.to_str().ok()),
            Some("curl/8")
        );
        assert!(
            metadata.get("cookie").is_none(),
            "only the listed headers travel"
        );
        assert_eq!(
            metadata
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
            Some("203.0.113.7, 10.0.0.2, 127.0.0.1")
        );

        let mut bad = HeaderMap::new();
        bad.insert(
            "idempotency-key",
            HeaderValue::from_bytes(b"caf\xc3\xa9").expect("value"),
        );
        assert!(matches!(
            super::metadata(&bad, None),
            Err(RequestError::Malformed(_))
        ));
        let only_peer = super::metadata(&HeaderMap::new(), Some(peer)).expect("metadata");
        assert_eq!(
            only_peer
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok()),
            Some("127.0.0.1")
        );
    }
}
