//! The reasons a transport gives on its own, before or around the service layer (the service layer's
//! own are `streambank_service::Error::reason`). Each is the `reason` of the contract's error body and
//! of a gRPC status's `ErrorInfo`, with one gRPC code; an HTTP answer's status follows from that code by
//! the standard mapping, except where HTTP has a status of its own ([`Reason::http`]).

use std::fmt;

use axum::http::StatusCode;

/// A transport-level reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A body, parameter or header that cannot be read (REST, gRPC and the gateway).
    MalformedRequest,
    /// A body over `BODY_LIMIT_BYTES` (REST and the gateway).
    BodyTooLarge,
    /// Headers over the limit (REST and the gateway).
    HeadersTooLarge,
    /// A protected route or method called without a token.
    TokenMissing,
    /// Over the per-address budget of logins and registrations.
    RateLimited,
    /// No such route (REST and the gateway).
    RouteNotFound,
    /// A route that exists, for another method (REST and the gateway).
    MethodNotAllowed,
    /// The request took longer than `REQUEST_TIMEOUT`.
    Timeout,
    /// The caller's own deadline passed (gRPC).
    DeadlineExceeded,
    /// The gateway cannot reach the gRPC server.
    UpstreamUnavailable,
    /// A gRPC message over the server's limit.
    MessageTooLarge,
    /// A gRPC message compressed with an encoding the server does not take.
    CompressionUnsupported,
    /// No such gRPC method.
    MethodNotFound,
    /// A unary method called with no message, or more than one (gRPC).
    RequestCardinality,
    /// A gRPC request the server cannot read at the protocol level.
    ProtocolError,
    /// Anything the server did wrong; the cause is logged, never shown.
    Internal,
}

impl Reason {
    /// The reason as the contract writes it.
    pub fn as_str(self) -> &'static str {
        self.parts().1
    }

    /// The gRPC code a status with this reason carries.
    pub fn grpc_code(self) -> tonic::Code {
        self.parts().0
    }

    /// The HTTP status and snake_case code of an HTTP answer with this reason: the standard mapping of
    /// its gRPC code, except where HTTP has a status of its own for it (413, 431, 405).
    pub fn http(self) -> (StatusCode, &'static str) {
        let (status, code) = streambank_gateway::error::http_status(self.grpc_code());
        let status = match self {
            Reason::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            _ => status,
        };
        (status, code)
    }

    fn parts(self) -> (tonic::Code, &'static str) {
        use tonic::Code;
        match self {
            Reason::MalformedRequest => (Code::InvalidArgument, "MALFORMED_REQUEST"),
            Reason::BodyTooLarge => (Code::InvalidArgument, "BODY_TOO_LARGE"),
            Reason::HeadersTooLarge => (Code::InvalidArgument, "HEADERS_TOO_LARGE"),
            Reason::TokenMissing => (Code::Unauthenticated, "TOKEN_MISSING"),
            Reason::RateLimited => (Code::ResourceExhausted, "RATE_LIMITED"),
            Reason::RouteNotFound => (Code::NotFound, "ROUTE_NOT_FOUND"),
            Reason::MethodNotAllowed => (Code::Unimplemented, "METHOD_NOT_ALLOWED"),
            Reason::Timeout => (Code::Unavailable, "TIMEOUT"),
            Reason::DeadlineExceeded => (Code::DeadlineExceeded, "DEADLINE_EXCEEDED"),
            Reason::UpstreamUnavailable => (Code::Unavailable, "UPSTREAM_UNAVAILABLE"),
            Reason::MessageTooLarge => (Code::ResourceExhausted, "MESSAGE_TOO_LARGE"),
            Reason::CompressionUnsupported => (Code::Unimplemented, "COMPRESSION_UNSUPPORTED"),
            Reason::MethodNotFound => (Code::Unimplemented, "METHOD_NOT_FOUND"),
            Reason::RequestCardinality => (Code::Unimplemented, "REQUEST_CARDINALITY"),
            Reason::ProtocolError => (Code::Internal, "PROTOCOL_ERROR"),
            Reason::Internal => (Code::Internal, "INTERNAL"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
