//! The HTTP/JSON gateway listener (`GATEWAY_ADDR`): the transcoder of `streambank-gateway` in front of
//! this process's gRPC server (or `GATEWAY_UPSTREAM`), wired to the contract.
//!
//! The crate knows nothing of StreamBank's contract; this module hands it what it needs: the error
//! body ([`contract::error::GatewayErrors`]: a client cannot tell the gateway from REST by its
//! errors), the public methods for its OpenAPI document ([`openapi`]), and the HTTP layers REST uses
//! ([`contract::http::layers`]: request ids, the span and its one log line, CORS, limits, a timeout).
//! Swagger UI is at `/swagger/`, the document at `/openapi.json`, the landing page at `/`.
//!
//! Why a proxy over the network rather than calling the service layer: the gateway exists to show the
//! grpc-gateway architecture (HTTP in front of gRPC), so it exercises the gRPC server's own layers
//! (authentication, rate limits, request ids) exactly as any gRPC client does. Why generic: a
//! hand-written handler per route would be a second REST API to keep in step with the protos.

pub mod openapi;

use std::sync::Arc;

use axum::Router;
use prost_reflect::DescriptorPool;
use streambank_gateway::{ErrorBody as _, Failure, RequestError, RouteTable};
use tonic::transport::Channel;
use utoipa_swagger_ui::SwaggerUi;

use crate::contract::error::GatewayErrors;
use crate::contract::http::{self, Listener};
use crate::contract::landing;

/// What the gateway takes from the process configuration: the HTTP layers' options.
pub type GatewayOptions = http::HttpOptions;

/// The gateway's routes, built from the `google.api.http` rules in `pool`; every call goes to `upstream`.
/// A rule that cannot be served is an error here, at start.
pub fn router(
    pool: &DescriptorPool,
    upstream: Channel,
    options: GatewayOptions,
) -> anyhow::Result<Router> {
    build(pool, upstream, &options, None)
}

/// [`router`], with the landing page at `/`.
pub fn router_with_landing(
    pool: &DescriptorPool,
    upstream: Channel,
    options: GatewayOptions,
    landing: landing::Landing,
) -> anyhow::Result<Router> {
    build(pool, upstream, &options, Some(landing))
}

fn build(
    pool: &DescriptorPool,
    upstream: Channel,
    options: &GatewayOptions,
    landing: Option<landing::Landing>,
) -> anyhow::Result<Router> {
    let routes = RouteTable::from_pool(pool)?;
    let document = openapi::document(pool, &routes);
    let methods = routes.methods();
    let transcoder = streambank_gateway::router(
        routes,
        upstream,
        options.body_limit_bytes,
        Arc::new(GatewayErrors),
    );
    let mut app = Router::new()
        .merge(SwaggerUi::new("/swagger").external_url_unchecked("/openapi.json", document));
    if let Some(landing) = landing {
        app = app.merge(landing::router(landing, Listener::Gateway));
    }
    let app = app.merge(transcoder).method_not_allowed_fallback(|| async {
        GatewayErrors.respond(Failure::Request(RequestError::MethodNotAllowed))
    });
    Ok(http::layers(app, Listener::Gateway, options, methods))
}
