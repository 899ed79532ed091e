//! The HTTP/JSON gateway (`GATEWAY_ADDR`): a generic transcoding proxy in front of the gRPC server.
//!
//! It holds no per-endpoint code. At start it reads the `google.api.http` rule of every method in the
//! descriptor set and builds a route table; each request is matched against it, turned into the
//! method's request message (prost-reflect `DynamicMessage`), sent over a real gRPC connection to
//! `GATEWAY_UPSTREAM`, and the answer turned back into the JSON REST gives for the same path. A new
//! annotated rpc gets its route, its transcoding and its OpenAPI entry without a line here.
//!
//! Why a proxy over the network rather than calling the service layer: the gateway exists to show the
//! grpc-gateway architecture (HTTP in front of gRPC), so it exercises the gRPC server's own layers
//! (authentication, rate limits, request ids) exactly as any gRPC client does. Why generic: a
//! hand-written handler per route would be a second REST API to keep in step with the protos.
//!
//! The router applies REST's cross-cutting layers, in the same order: request ids (`x-request-id`,
//! generated when absent, echoed, forwarded as metadata, on the request's span), a tracing span per
//! request continuing a caller's `traceparent`, CORS, a request timeout (`503 unavailable TIMEOUT`),
//! and the body size limit (`413 BODY_TOO_LARGE`).
//!
//! # Layout
//!
//! - [`template`]: `google.api.http` path templates: parsing, matching, specificity.
//! - [`routes`]: the route table built from the descriptor pool, and the lookup (`404` and `405`).
//! - [`request`]: path, query and JSON body into the request message.
//! - [`codec`]: the tonic codec for `DynamicMessage`.
//! - [`proxy`]: the handler: headers as metadata, the upstream call.
//! - [`response`]: the response message as REST's JSON, and the success status.
//! - [`json`]: the response's protobuf bytes written straight out as that JSON.
//! - [`error`]: gRPC statuses and local failures as the contract's error body.
//! - [`openapi`]: the OpenAPI document generated from the same descriptors, and Swagger UI (with the
//!   constraints of [`crate::rest::constraints`]).

pub mod codec;
pub mod error;
pub mod json;
pub mod openapi;
pub mod proxy;
pub mod request;
pub mod response;
pub mod routes;
pub mod template;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Request, header};
use prost_reflect::DescriptorPool;
use tonic::transport::Channel;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

use crate::config::Config;
use crate::rest::error::ApiError;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the gateway takes from the process configuration.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    pub cors_allowed_origins: Vec<String>,
}

impl From<&Config> for GatewayOptions {
    fn from(config: &Config) -> Self {
        Self {
            body_limit_bytes: config.body_limit_bytes,
            request_timeout: config.request_timeout,
            cors_allowed_origins: config.cors_allowed_origins.clone(),
        }
    }
}

/// The gateway's routes, built from the `google.api.http` rules in `pool`; every call goes to `upstream`.
/// A rule that cannot be served is an error here, at start.
pub fn router(
    pool: &DescriptorPool,
    upstream: Channel,
    options: GatewayOptions,
) -> anyhow::Result<Router> {
    let routes = routes::RouteTable::from_pool(pool)?;
    let document = openapi::document(pool, &routes);
    let methods = routes.methods();
    let gateway = Arc::new(proxy::Gateway::new(
        routes,
        upstream,
        options.body_limit_bytes,
    ));

    let app = Router::new()
        .merge(SwaggerUi::new("/swagger").external_url_unchecked("/openapi.json", document))
        .fallback(proxy::handle)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(options.body_limit_bytes))
        .with_state(gateway);

    Ok(app.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
            .layer(axum::middleware::from_fn(crate::rest::security_headers))
            .layer(
                TraceLayer::new_for_http()
                    .make_span_with(|request: &Request<_>| {
                        let request_id = request
                            .headers()
                            .get(REQUEST_ID)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default();
                        // The route template is recorded when the route table has matched it (`proxy`); the
                        // URI is not, since its query can hold a verification code or a token.
                        let span = tracing::info_span!(
                            "gateway request",
                            method = crate::rest::metrics::method_label(request.method()),
                            route = tracing::field::Empty,
                            request_id
                        );
                        if let Some(traceparent) = request
                            .headers()
                            .get("traceparent")
                            .and_then(|v| v.to_str().ok())
                        {
                            streambank_telemetry::continue_trace(&span, traceparent);
                        }
                        span
                    })
                    .on_response(crate::rest::log_response),
            )
            .layer(PropagateRequestIdLayer::new(REQUEST_ID))
            .layer(axum::middleware::from_fn(crate::rest::header_limit))
            .layer(axum::middleware::from_fn_with_state(
                options.body_limit_bytes,
                crate::rest::declared_body_limit,
            ))
            .layer(cors(&options.cors_allowed_origins, methods))
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                ApiError::Timeout
            }))
            .timeout(options.request_timeout),
    ))
}

/// REST's CORS policy, for the methods the rules use.
fn cors(origins: &[String], mut methods: Vec<Method>) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins.iter().filter_map(|o| o.parse().ok()).collect();
    if !methods.contains(&Method::OPTIONS) {
        methods.push(Method::OPTIONS);
    }
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(methods)
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
            REQUEST_ID,
        ])
        .expose_headers([REQUEST_ID, header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
