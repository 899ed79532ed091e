//! The contract's error shape for every HTTP failure, on REST and the gateway alike:
//! `{"error": {"code": "<grpc code>", "reason": "<REASON>", "message": "...", "details": {...}}}`,
//! with the standard gRPC-to-HTTP status mapping and its one exception: a reused idempotency key is
//! `422`. A 500 never carries internal text: the cause is logged where the error is turned into a
//! response, once, inside the request's span (which carries its `x-request-id`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use streambank_domain::FieldViolation;
use streambank_gateway::{Failure, RequestError};
use streambank_service::{Code, Error};
use utoipa::ToSchema;

use super::{INTERNAL_MESSAGE, Reason};

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

/// The gRPC code of a service-layer error class.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::Aborted => tonic::Code::Aborted,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::Internal => tonic::Code::Internal,
    }
}

/// The standard gRPC-to-HTTP mapping of a service-layer error class, and the code's snake_case name.
pub fn status_and_code(code: Code) -> (StatusCode, &'static str) {
    streambank_gateway::error::http_status(grpc_code(code))
}

/// The contract's one exception to the standard mapping: an error whose reason is
/// `IDEMPOTENCY_KEY_REUSED` (`failed_precondition`, 400 by the mapping) is answered 422.
pub fn with_exception(status: StatusCode, reason: &str) -> StatusCode {
    if reason == Error::IdempotencyKeyReused.reason() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        status
    }
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

/// A transport-level failure in the contract's shape.
pub fn reason_response(reason: Reason, message: String, violations: &[FieldViolation]) -> Response {
    let (status, code) = reason.http();
    error_response(status, code, reason.as_str(), message, violations)
}

/// A service-layer failure in the contract's shape; an internal one is logged here, with its cause.
pub fn service_response(error: &Error) -> Response {
    let (status, code) = status_and_code(error.code());
    let message = match error {
        Error::Internal(cause) => {
            tracing::error!(error.cause_chain = ?cause, error.message = %cause, "request failed");
            INTERNAL_MESSAGE.to_owned()
        }
        other => other.to_string(),
    };
    error_response(
        with_exception(status, error.reason()),
        code,
        error.reason(),
        message,
        error.violations(),
    )
}

/// The gateway's failures in the contract's shape ([`streambank_gateway::ErrorBody`]): its own
/// findings about a request as REST answers the same, the gRPC server's statuses with their reasons,
/// and the exception for a reused key.
#[derive(Debug, Clone, Copy, Default)]
pub struct GatewayErrors;

impl streambank_gateway::ErrorBody for GatewayErrors {
    fn respond(&self, failure: Failure) -> Response {
        match failure {
            Failure::Request(e) => {
                let (reason, violations) = match &e {
                    RequestError::RouteNotFound => (Reason::RouteNotFound, Vec::new()),
                    RequestError::MethodNotAllowed => (Reason::MethodNotAllowed, Vec::new()),
                    RequestError::BodyTooLarge { .. } => (Reason::BodyTooLarge, Vec::new()),
                    RequestError::Malformed(v) => (Reason::MalformedRequest, violations(v)),
                };
                reason_response(reason, e.to_string(), &violations)
            }
            Failure::Status(status) => error_response(
                with_exception(status.http, &status.reason),
                status.code,
                &status.reason,
                status
                    .message
                    .unwrap_or_else(|| INTERNAL_MESSAGE.to_owned()),
                &violations(&status.violations),
            ),
            Failure::Unreachable => reason_response(
                Reason::UpstreamUnavailable,
                "the service is unavailable; retry later".to_owned(),
                &[],
            ),
            Failure::Internal => {
                reason_response(Reason::Internal, INTERNAL_MESSAGE.to_owned(), &[])
            }
        }
    }
}

fn violations(from: &[streambank_gateway::Violation]) -> Vec<FieldViolation> {
    from.iter()
        .map(|v| FieldViolation {
            field: v.field.clone(),
            description: v.description.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::to_bytes;
    use serde_json::json;
    use tonic_types::ErrorDetails;

    use axum::http::header;
    use streambank_gateway::error::status_response;
    use tonic::Status;
    use tonic_types::StatusExt as _;

    use super::*;

    async fn read(response: Response) -> (StatusCode, Option<String>, serde_json::Value) {
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, retry, serde_json::from_slice(&bytes).expect("json"))
    }

    fn status(code: tonic::Code, message: &str, reason: &str, bad: &[(&str, &str)]) -> Status {
        let mut details = ErrorDetails::with_error_info(reason, "streambank", HashMap::new());
        for (field, description) in bad {
            details.add_bad_request_violation(*field, *description);
        }
        Status::with_error_details(code, message, details)
    }

    #[tokio::test]
    async fn statuses_become_the_contract_error() {
        let (http, _, body) = read(status_response(
            &status(
                tonic::Code::InvalidArgument,
                "the request has invalid fields",
                "VALIDATION_FAILED",
                &[("username", "too short"), ("email", "not an address")],
            ),
            &GatewayErrors,
        ))
        .await;
        assert_eq!(http, StatusCode::BAD_REQUEST);
        assert_eq!(
            body,
            json!({"error": {"code": "invalid_argument", "reason": "VALIDATION_FAILED",
                "message": "the request has invalid fields",
                "details": {"field_violations": [
                    {"field": "username", "description": "too short"},
                    {"field": "email", "description": "not an address"}]}}})
        );

        let (http, _, body) = read(status_response(
            &status(
                tonic::Code::FailedPrecondition,
                "reused",
                "IDEMPOTENCY_KEY_REUSED",
                &[],
            ),
            &GatewayErrors,
        ))
        .await;
        assert_eq!(http, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "failed_precondition");
        assert_eq!(body["error"]["details"], json!({}));

        let (http, _, body) = read(status_response(
            &status(
                tonic::Code::Internal,
                "relation \"users\" does not exist",
                "INTERNAL",
                &[],
            ),
            &GatewayErrors,
        ))
        .await;
        assert_eq!(http, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("users")
        );

        let (http, _, body) = read(status_response(
            &Status::unknown("panic at src/x.rs:1"),
            &GatewayErrors,
        ))
        .await;
        assert_eq!(http, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "unknown");
        assert_eq!(body["error"]["message"], INTERNAL_MESSAGE);

        let (http, _, body) = read(status_response(
            &Status::unavailable("tcp connect error"),
            &GatewayErrors,
        ))
        .await;
        assert_eq!(http, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["reason"], "UPSTREAM_UNAVAILABLE");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("tcp")
        );

        let (http, _, body) = read(status_response(
            &Status::unimplemented("no such method"),
            &GatewayErrors,
        ))
        .await;
        assert_eq!(http, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(body["error"]["reason"], "UNIMPLEMENTED");

        let mut limited = status(
            tonic::Code::ResourceExhausted,
            "slow down",
            "RATE_LIMITED",
            &[],
        );
        limited
            .metadata_mut()
            .insert("retry-after", tonic::metadata::MetadataValue::from(7));
        let (http, retry, body) = read(status_response(&limited, &GatewayErrors)).await;
        assert_eq!(http, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("7"));
        assert_eq!(body["error"]["code"], "resource_exhausted");
    }
}
