//! The contract's error shape for every REST failure:
//! `{"error": {"code": "<grpc code>", "reason": "<REASON>", "message": "...", "details": {...}}}`,
//! with the standard gRPC-to-HTTP status mapping. A 500 never carries internal text: the cause is
//! logged here, once, inside the request's span (which carries its `x-request-id`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use streambank_domain::FieldViolation;
use streambank_service::{Code, Error};
use utoipa::ToSchema;

/// Everything a REST handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] Error),
    /// The request could not be decoded (bad JSON, wrong types, a bad path or query parameter).
    #[error("the request could not be read")]
    Malformed(Vec<FieldViolation>),
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge { limit: usize },
    #[error("the request's headers come to more than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("the Authorization header must be `Bearer <access token>`")]
    MissingToken,
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("no such route")]
    RouteNotFound,
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("the request took too long")]
    Timeout,
}

impl ApiError {
    pub fn malformed(field: &str, description: impl Into<String>) -> Self {
        ApiError::Malformed(vec![FieldViolation {
            field: field.to_owned(),
            description: description.into(),
        }])
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::Service(e) => {
                // The contract makes one exception to the standard mapping: a reused key is 422.
                if matches!(e, Error::IdempotencyKeyReused) {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "failed_precondition",
                        e.reason(),
                    );
                }
                let (status, code) = status_and_code(e.code());
                (status, code, e.reason())
            }
            ApiError::Malformed(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_argument",
                "MALFORMED_REQUEST",
            ),
            ApiError::BodyTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_argument",
                "BODY_TOO_LARGE",
            ),
            ApiError::HeadersTooLarge { .. } => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "invalid_argument",
                "HEADERS_TOO_LARGE",
            ),
            ApiError::MissingToken => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", "TOKEN_MISSING")
            }
            ApiError::RateLimited { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "resource_exhausted",
                "RATE_LIMITED",
            ),
            ApiError::RouteNotFound => (StatusCode::NOT_FOUND, "not_found", "ROUTE_NOT_FOUND"),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "unimplemented",
                "METHOD_NOT_ALLOWED",
            ),
            ApiError::Timeout => (StatusCode::SERVICE_UNAVAILABLE, "unavailable", "TIMEOUT"),
        }
    }
}

/// The standard gRPC-to-HTTP mapping, and the code's snake_case name.
pub fn status_and_code(code: Code) -> (StatusCode, &'static str) {
    match code {
        Code::InvalidArgument => (StatusCode::BAD_REQUEST, "invalid_argument"),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
        Code::PermissionDenied => (StatusCode::FORBIDDEN, "permission_denied"),
        Code::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        Code::AlreadyExists => (StatusCode::CONFLICT, "already_exists"),
        Code::FailedPrecondition => (StatusCode::BAD_REQUEST, "failed_precondition"),
        Code::ResourceExhausted => (StatusCode::TOO_MANY_REQUESTS, "resource_exhausted"),
        Code::Aborted => (StatusCode::CONFLICT, "aborted"),
        Code::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        Code::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The error body (for the OpenAPI document).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The gRPC status code in snake_case (`invalid_argument`, `not_found`, ...).
    pub code: String,
    /// A stable machine-readable reason (`INSUFFICIENT_FUNDS`, `TOKEN_EXPIRED`, ...).
    pub reason: String,
    pub message: String,
    /// `field_violations` for invalid requests; otherwise empty.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

/// The contract's error body with its status: what every REST and gateway failure answers.
pub fn error_response(
    status: StatusCode,
    code: &str,
    reason: &str,
    message: String,
    violations: &[FieldViolation],
) -> Response {
    let details = if violations.is_empty() {
        json!({})
    } else {
        json!({ "field_violations": violations })
    };
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            reason: reason.to_owned(),
            message,
            details,
        },
    };
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, reason) = self.parts();
        let message = match &self {
            ApiError::Service(Error::Internal(cause)) => {
                tracing::error!(error.cause_chain = ?cause, error.message = %cause, "request failed");
                "internal error; quote the x-request-id response header when reporting it"
                    .to_owned()
            }
            other => other.to_string(),
        };
        let violations: &[FieldViolation] = match &self {
            ApiError::Service(e) => e.violations(),
            ApiError::Malformed(v) => v,
            _ => &[],
        };
        let mut response = error_response(status, code, reason, message, violations);
        if let ApiError::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
