//! The one handler behind every gateway route: look the request up in the route table, build the
//! request message, call the gRPC method over the upstream channel with the caller's headers as
//! metadata, and answer with the response as JSON (or the status as the contract's error).
//!
//! The headers that matter to the gRPC server travel as metadata: `authorization`, `idempotency-key`,
//! `x-request-id` (set by the router's request-id layer when the caller sent none), `user-agent`,
//! `traceparent` (replaced by the gateway span's own when traces are exported, so the gRPC call is its
//! child) and `accept`. `x-forwarded-for` is the caller's own chain with the socket peer
//! appended, so that a gRPC server that trusts the gateway as a proxy sees the real client address.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

use super::codec::DynamicCodec;
use super::error::GatewayError;
use super::request::{self, Parts};
use super::response;
use super::routes::{Body, Lookup, RouteTable};
use crate::rest::error::ApiError;
use crate::rest::extract::peer_ip;

/// The request headers forwarded as gRPC metadata, under the same names.
pub const FORWARDED_HEADERS: [&str; 6] = [
    "authorization",
    "idempotency-key",
    "x-request-id",
    "user-agent",
    "traceparent",
    "accept",
];

/// What every call shares: the route table and the channel to the gRPC server.
#[derive(Debug)]
pub struct Gateway {
    routes: RouteTable,
    upstream: Channel,
    body_limit_bytes: usize,
}

impl Gateway {
    pub fn new(routes: RouteTable, upstream: Channel, body_limit_bytes: usize) -> Self {
        Self {
            routes,
            upstream,
            body_limit_bytes,
        }
    }

    #[tracing::instrument(name = "Transcoding an HTTP request to a gRPC call", skip_all, fields(rpc.method = tracing::field::Empty))]
    async fn call(&self, request: Request, outer: tracing::Span) -> Result<Response, GatewayError> {
        let (route, captures) = match self.routes.lookup(request.method(), request.uri().path()) {
            Lookup::Found(route, captures) => {
                outer.record("route", route.template.as_str());
                (route, captures)
            }
            Lookup::MethodNotAllowed(allow) => {
                outer.record("route", "unmatched");
                let mut response = ApiError::MethodNotAllowed.into_response();
                if let Ok(allow) = axum::http::HeaderValue::from_str(&allow) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::ALLOW, allow);
                }
                return Ok(response);
            }
            Lookup::NotFound => {
                outer.record("route", "unmatched");
                return Err(ApiError::RouteNotFound.into());
            }
        };
        tracing::Span::current().record("rpc.method", route.grpc_path.as_str());
        let mut metadata = metadata(request.headers(), peer_ip(request.extensions()))?;
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
    async fn read_json(&self, request: Request) -> Result<Bytes, ApiError> {
        if !crate::rest::extract::is_json(request.headers()) {
            return Err(ApiError::malformed(
                "body",
                "send JSON with Content-Type: application/json",
            ));
        }
        Bytes::from_request(request, &())
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge {
                        limit: self.body_limit_bytes,
                    }
                } else {
                    ApiError::malformed("body", "the body could not be read")
                }
            })
    }
}

/// The gateway's only handler (the router's fallback).
pub async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    match gateway.call(request, tracing::Span::current()).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// The forwarded headers as metadata. A header that is not visible ASCII is dropped, as REST ignores
/// it, except `idempotency-key`, which REST rejects.
pub fn metadata(headers: &HeaderMap, peer: Option<IpAddr>) -> Result<MetadataMap, ApiError> {
    let mut out = HeaderMap::new();
    for name in FORWARDED_HEADERS {
        for value in headers.get_all(name) {
            if value.to_str().is_err() {
                if name == "idempotency-key" {
                    return Err(ApiError::malformed(
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
            Err(ApiError::Malformed(_))
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
