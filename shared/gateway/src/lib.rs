//! `streambank-gateway`: a generic gRPC-JSON transcoder, the grpc-gateway architecture in one crate.
//!
//! It holds no per-endpoint code. It reads the `google.api.http` rule of every method of a descriptor
//! pool and builds a route table; each HTTP request is matched against it, turned into the method's
//! request message (prost-reflect `DynamicMessage`), sent over a real gRPC channel, and the answer
//! turned back into JSON. A new annotated rpc gets its route, its transcoding and its OpenAPI entry
//! without a line here.
//!
//! It knows nothing of the server it fronts beyond its descriptors: what a failure looks like on the
//! wire is the caller's [`ErrorBody`], which methods need no token is a list the caller passes to
//! [`openapi::document`], and the cross-cutting HTTP layers (request ids, spans, CORS, limits, a
//! timeout) are the caller's to wrap around [`router`]. StreamBank's api does all three from its
//! `contract` module, the same code its REST listener uses, so that a client cannot tell the two apart.
//!
//! # Layout
//!
//! - [`template`]: `google.api.http` path templates: parsing, matching, specificity.
//! - [`routes`]: the route table built from the descriptor pool, and the lookup (`404` and `405`).
//! - [`request`]: path, query and body into the request message.
//! - [`body`]: the JSON body (the whole message, or one field's value), read as REST reads bodies.
//! - [`codec`]: the tonic codec for `DynamicMessage`.
//! - [`proxy`]: the handler: headers as metadata, the upstream call.
//! - [`response`]: the response message as JSON, and the success status.
//! - [`error`]: gRPC statuses and local failures, for the caller's [`ErrorBody`] to write.
//! - [`openapi`]: the OpenAPI document generated from the same descriptors.

pub mod body;
pub mod codec;
pub mod error;
pub mod openapi;
pub mod proxy;
pub mod request;
pub mod response;
pub mod routes;
pub mod template;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tonic::transport::Channel;

pub use error::{ErrorBody, Failure, RequestError, StatusFailure, Violation};
pub use proxy::MatchedRoute;
pub use routes::RouteTable;

/// The gateway's routes: every request is looked up in `routes` and, when it matches, sent to
/// `upstream`; bodies above `body_limit_bytes` are refused; `errors` writes every failure.
pub fn router(
    routes: RouteTable,
    upstream: Channel,
    body_limit_bytes: usize,
    errors: Arc<dyn ErrorBody>,
) -> Router {
    let gateway = Arc::new(proxy::Gateway::new(
        routes,
        upstream,
        body_limit_bytes,
        errors,
    ));
    Router::new()
        .fallback(proxy::handle)
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .with_state(gateway)
}
