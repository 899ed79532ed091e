//! Every gateway failure, handed to the [`ErrorBody`] the gateway was built with, so that its errors
//! are written in the caller's contract (for StreamBank: REST's error shape, by the api's own code).
//!
//! Failures the gateway finds itself (no route, a body it cannot read) are [`RequestError`]s. A gRPC
//! status is turned into a [`StatusFailure`] with the standard HTTP mapping (google.rpc.Code), the
//! reason from the status's `google.rpc.ErrorInfo`, the bad fields from its `google.rpc.BadRequest`;
//! `Retry-After` is copied from its metadata onto whatever the error body answers. An internal or
//! unknown status never shows its message: the [`StatusFailure`] carries none, and the error body says
//! what its contract says instead.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tonic::Status;
use tonic_types::StatusExt as _;

/// How the gateway's failures are written: the contract's error body, supplied by whoever serves the
/// gateway. The gateway adds `Allow` (on a 405) and `Retry-After` (from the upstream's metadata) to
/// what it answers.
pub trait ErrorBody: std::fmt::Debug + Send + Sync + 'static {
    fn respond(&self, failure: Failure) -> Response;
}

/// A field of the request that is wrong, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// What is wrong with the request itself, found before any call.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// A body, parameter or header that cannot be read as the request message.
    #[error("the request could not be read")]
    Malformed(Vec<Violation>),
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
}

impl RequestError {
    pub fn malformed(field: &str, description: impl Into<String>) -> Self {
        RequestError::Malformed(vec![Violation {
            field: field.to_owned(),
            description: description.into(),
        }])
    }
}

/// A failure for the error body to write.
#[derive(Debug)]
pub enum Failure {
    Request(RequestError),
    /// The gRPC server answered an error status.
    Status(StatusFailure),
    /// The gRPC server could not be reached (already logged at WARN).
    Unreachable,
    /// The answer could not be written as JSON (already logged at ERROR).
    Internal,
}

/// A gRPC error status in HTTP terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFailure {
    /// The standard mapping of the gRPC code.
    pub http: StatusCode,
    /// The gRPC code in snake_case (`invalid_argument`).
    pub code: &'static str,
    /// The `google.rpc.ErrorInfo` reason; when the status carries none, the code in UPPER_SNAKE case.
    pub reason: String,
    /// The status's message; `None` for one that must not reach a client (internal, unknown, data
    /// loss: logged here at ERROR).
    pub message: Option<String>,
    pub violations: Vec<Violation>,
}

/// Everything a gateway call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request itself: no route, wrong method, a body or parameter that cannot be read.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The gRPC server answered with an error status.
    #[error("the gRPC server answered {}: {}", .0.code(), .0.message())]
    Upstream(Status),
    /// The gRPC server could not be reached.
    #[error("the gRPC server is unreachable: {0}")]
    Unreachable(String),
    /// The gRPC answer could not be written as JSON.
    #[error("the response could not be encoded as JSON")]
    Encode(#[source] super::response::EncodeError),
}

impl GatewayError {
    /// The answer, written by `body`.
    pub fn respond(self, body: &dyn ErrorBody) -> Response {
        match self {
            GatewayError::Request(e) => body.respond(Failure::Request(e)),
            GatewayError::Upstream(status) => status_response(&status, body),
            GatewayError::Unreachable(cause) => unreachable(&cause, body),
            GatewayError::Encode(cause) => {
                tracing::error!(error.cause_chain = ?cause, error.message = %cause, "request failed");
                body.respond(Failure::Internal)
            }
        }
    }
}

/// The HTTP status and snake_case name of a gRPC code: the standard mapping (google.rpc.Code).
pub fn http_status(code: tonic::Code) -> (StatusCode, &'static str) {
    match code {
        tonic::Code::Ok => (StatusCode::OK, "ok"),
        tonic::Code::Cancelled => (client_closed_request(), "cancelled"),
        tonic::Code::Unknown => (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
        tonic::Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        tonic::Code::DeadlineExceeded => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        tonic::Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        tonic::Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        tonic::Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        tonic::Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
        tonic::Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "failed_precondition"),
        tonic::Code::Aborted => (StatusCode::CONFLICT, "aborted"),
        tonic::Code::OutOfRange => (StatusCode::BAD_REQUEST, "out_of_range"),
        tonic::Code::Unimplemented => (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
        tonic::Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        tonic::Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        tonic::Code::DataLoss => (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
        tonic::Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
    }
}

/// 499, nginx's "client closed request", which the standard mapping uses for `cancelled`.
fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// A gRPC error status in HTTP terms (`None` for a status that did not come from the server's own
/// code but from the connection: the server is unreachable).
pub fn status_failure(status: &Status) -> Option<StatusFailure> {
    let details = status.get_error_details();
    let reason = details
        .error_info()
        .map(|info| info.reason.clone())
        .filter(|reason| !reason.is_empty());
    let (http, code) = http_status(status.code());
    let Some(reason) = reason else {
        // Not the server's own answer: the connection failed, or something between us and the
        // server (tonic itself, a proxy) answered.
        if status.code() == tonic::Code::Unavailable {
            return None;
        }
        return Some(StatusFailure {
            http,
            code,
            reason: code.to_ascii_uppercase(),
            message: message(status, code),
            violations: Vec::new(),
        });
    };
    let violations = details
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| Violation {
                    field: v.field.clone(),
                    description: v.description.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    Some(StatusFailure {
        http,
        code,
        reason,
        message: message(status, code),
        violations,
    })
}

/// A gRPC error status as the contract's error.
pub fn status_response(status: &Status, body: &dyn ErrorBody) -> Response {
    match status_failure(status) {
        Some(failure) => with_retry_after(body.respond(Failure::Status(failure)), status),
        None => unreachable(status.message(), body),
    }
}

/// The status's message, unless it is one that must not leak.
fn message(status: &Status, code: &str) -> Option<String> {
    match status.code() {
        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
            tracing::error!(
                grpc.code = code,
                grpc.message = status.message(),
                "request failed upstream"
            );
            None
        }
        _ => Some(status.message().to_owned()),
    }
}

fn unreachable(cause: &str, body: &dyn ErrorBody) -> Response {
    tracing::warn!(error.message = cause, "the gRPC server is unreachable");
    body.respond(Failure::Unreachable)
}

fn with_retry_after(mut response: Response, status: &Status) -> Response {
    if let Some(value) = status
        .metadata()
        .get("retry-after")
        .and_then(|v| HeaderValue::from_bytes(v.as_encoded_bytes()).ok())
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// A plain error body for the crate's own tests: `{"error": {"code", "reason", "message"}}`.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct PlainErrors;

#[cfg(test)]
impl ErrorBody for PlainErrors {
    fn respond(&self, failure: Failure) -> Response {
        use axum::response::IntoResponse as _;
        let (status, code, reason, message) = match failure {
            Failure::Request(e) => (
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "REQUEST",
                e.to_string(),
            ),
            Failure::Status(s) => (s.http, s.code, "STATUS", s.message.unwrap_or_default()),
            Failure::Unreachable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "UNREACHABLE",
                String::new(),
            ),
            Failure::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "INTERNAL",
                "internal error".into(),
            ),
        };
        let body =
            serde_json::json!({"error": {"code": code, "reason": reason, "message": message}});
        (status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tonic_types::ErrorDetails;

    use super::*;

    #[test]
    fn a_status_keeps_its_reason_and_bad_fields_and_hides_internal_text() {
        let mut details =
            ErrorDetails::with_error_info("VALIDATION_FAILED", "streambank", HashMap::new());
        details.add_bad_request_violation("username", "too short");
        let status = Status::with_error_details(
            tonic::Code::InvalidArgument,
            "the request has invalid fields",
            details,
        );
        assert_eq!(
            status_failure(&status),
            Some(StatusFailure {
                http: StatusCode::BAD_REQUEST,
                code: "invalid_argument",
                reason: "VALIDATION_FAILED".into(),
                message: Some("the request has invalid fields".into()),
                violations: vec![Violation {
                    field: "username".into(),
                    description: "too short".into()
                }],
            })
        );
        let unknown = status_failure(&Status::unknown("panic at src/x.rs:1")).expect("failure");
        assert_eq!(
            (unknown.http, unknown.code, unknown.reason.as_str()),
            (StatusCode::INTERNAL_SERVER_ERROR, "unknown", "UNKNOWN")
        );
        assert_eq!(unknown.message, None);
        assert_eq!(
            status_failure(&Status::unavailable("tcp connect error")),
            None
        );
    }

    #[test]
    fn every_code_has_a_status() {
        for (code, http) in [
            (tonic::Code::Cancelled, 499),
            (tonic::Code::DeadlineExceeded, 504),
            (tonic::Code::OutOfRange, 400),
            (tonic::Code::DataLoss, 500),
            (tonic::Code::NotFound, 404),
            (tonic::Code::AlreadyExists, 409),
            (tonic::Code::Aborted, 409),
        ] {
            assert_eq!(http_status(code).0.as_u16(), http, "{code:?}");
        }
    }
}
