//! What the api's three listeners (REST, gRPC and the gateway) share, so that none of them imports
//! another: the names on the wire, the error body and its HTTP mapping, the HTTP layer stack of REST
//! and the gateway, who the client is, the metrics, and what both OpenAPI documents add to what their
//! generators know. A transport module (`rest`, `grpc`, `gateway`) imports from here and from the
//! service layer, never from a sibling.
//!
//! # Layout
//!
//! - [`reason`]: the transport-level reasons (a route that does not exist, a body too large, ...),
//!   as one enum, with their gRPC code.
//! - [`error`]: the contract's error body, the gRPC-to-HTTP mapping with its one exception (a reused
//!   idempotency key is 422), and the same body for the gateway's failures.
//! - [`http`]: the layers REST and the gateway wrap around their routes, the request's span and its
//!   one log line.
//! - [`client`]: the client's address behind trusted proxies.
//! - [`metrics`]: the Prometheus series every listener records, and the metrics listener.
//! - [`constraints`]: what both OpenAPI documents state beyond their generators.
//! - [`landing`]: the page at `/` on REST and the gateway.

pub mod client;
pub mod constraints;
pub mod error;
pub mod http;
pub mod landing;
pub mod metrics;
pub mod reason;

use axum::http::HeaderName;

pub use reason::Reason;

/// The request id every listener reads (generating one when absent), echoes and logs.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What an HTTP client reads instead of an internal error's text.
pub const INTERNAL_MESSAGE: &str =
    "internal error; quote the x-request-id response header when reporting it";

/// What a gRPC client reads instead of an internal error's text.
pub const INTERNAL_MESSAGE_GRPC: &str =
    "internal error; quote the x-request-id response metadata when reporting it";

/// The methods anyone may call without a token (`/package.Service/Method`). Every other
/// `streambank.v1` method needs one; the gRPC server enforces it and the gateway's document says so.
/// (Reflection and health are other packages, and public.)
pub const PUBLIC_METHODS: &[&str] = &[
    "/streambank.v1.UserService/CreateUser",
    "/streambank.v1.UserService/VerifyEmail",
    "/streambank.v1.UserService/Login",
    "/streambank.v1.UserService/Refresh",
];
