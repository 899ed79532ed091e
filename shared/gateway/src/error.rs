//! Every gateway failure in the contract's error shape, so that a client cannot tell the gateway from
//! REST by its errors: `{"error": {"code", "reason", "message", "details"}}`.
//!
//! Failures the gateway finds itself (no route, a body it cannot read, a timeout) are REST's own
//! [`ApiError`]s, answered by the same code. A gRPC status is turned back into the same body: the code
//! in snake_case with the standard HTTP mapping (REST's [`status_and_code`], plus the codes the service
//! layer never uses), the reason from the status's `google.rpc.ErrorInfo`, the bad fields from its
//! `google.rpc.BadRequest`, and `Retry-After` from its metadata. The contract's one exception holds
//! here too: `IDEMPOTENCY_KEY_REUSED` is 422. An internal or unknown status never shows its message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use streambank_domain::FieldViolation;
use streambank_service::Code;
use tonic::Status;
use tonic_types::StatusExt as _;

use crate::rest::error::{ApiError, error_response, status_and_code};

/// What a client reads instead of an internal error's text (REST's wording).
const INTERNAL_MESSAGE: &str =
    "internal error; quote the x-request-id response header when reporting it";

/// Everything a gateway call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request itself: no route, wrong method, a body or parameter that cannot be read, a timeout.
    #[error(transparent)]
    Request(#[from] ApiError),
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

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match self {
            GatewayError::Request(e) => e.into_response(),
            GatewayError::Upstream(status) => status_response(&status),
            GatewayError::Unreachable(cause) => unreachable(&cause),
            GatewayError::Encode(cause) => {
                tracing::error!(error.cause_chain = ?cause, error.message = %cause, "request failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "INTERNAL",
                    INTERNAL_MESSAGE.to_owned(),
                    Vec::new(),
                )
            }
        }
    }
}

/// The HTTP status and snake_case name of a gRPC code: REST's mapping for the codes the service layer
/// uses, the standard one (google.rpc.Code) for the rest.
pub fn http_status(code: tonic::Code) -> (StatusCode, &'static str) {
    let service = match code {
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        tonic::Code::Unauthenticated => Code::Unauthenticated,
        tonic::Code::PermissionDenied => Code::PermissionDenied,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::AlreadyExists => Code::AlreadyExists,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::Aborted => Code::Aborted,
        tonic::Code::Unavailable => Code::Unavailable,
        tonic::Code::Internal => Code::Internal,
        tonic::Code::Ok => return (StatusCode::OK, "ok"),
        tonic::Code::Cancelled => return (client_closed_request(), "cancelled"),
        tonic::Code::Unknown => return (StatusCode::INTERNAL_SERVER_ERROR, "unknown"),
        tonic::Code::DeadlineExceeded => return (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
        tonic::Code::OutOfRange => return (StatusCode::BAD_REQUEST, "out_of_range"),
        tonic::Code::Unimplemented => return (StatusCode::NOT_IMPLEMENTED, "unimplemented"),
        tonic::Code::DataLoss => return (StatusCode::INTERNAL_SERVER_ERROR, "data_loss"),
    };
    status_and_code(service)
}

/// 499, nginx's "client closed request", which the standard mapping uses for `cancelled`.
fn client_closed_request() -> StatusCode {
    StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST)
}

/// A gRPC error status as the contract's error.
pub fn status_response(status: &Status) -> Response {
    let details = status.get_error_details();
    let reason = details
        .error_info()
        .map(|info| info.reason.clone())
        .filter(|reason| !reason.is_empty());
    let Some(reason) = reason else {
        // Not a StreamBank answer: the connection failed, or something between us and the server
        // (tonic itself, a proxy) answered.
        if status.code() == tonic::Code::Unavailable {
            return unreachable(status.message());
        }
        let (http, code) = http_status(status.code());
        return with_retry_after(
            body(
                http,
                code,
                &code.to_ascii_uppercase(),
                message(status, code),
                Vec::new(),
            ),
            status,
        );
    };
    let (mut http, code) = http_status(status.code());
    if reason == "IDEMPOTENCY_KEY_REUSED" {
        http = StatusCode::UNPROCESSABLE_ENTITY;
    }
    let violations = details
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| FieldViolation {
                    field: v.field.clone(),
                    description: v.description.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    with_retry_after(
        body(http, code, &reason, message(status, code), violations),
        status,
    )
}

/// The status's message, unless it is one that must not leak.
fn message(status: &Status, code: &str) -> String {
    match status.code() {
        tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
            tracing::error!(
                grpc.code = code,
                grpc.message = status.message(),
                "request failed upstream"
            );
            INTERNAL_MESSAGE.to_owned()
        }
        _ => status.message().to_owned(),
    }
}

fn unreachable(cause: &str) -> Response {
    tracing::warn!(error.message = cause, "the gRPC server is unreachable");
    body(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "UPSTREAM_UNAVAILABLE",
        "the service is unavailable; retry later".to_owned(),
        Vec::new(),
    )
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

fn body(
    status: StatusCode,
    code: &str,
    reason: &str,
    message: String,
    violations: Vec<FieldViolation>,
) -> Response {
    error_response(status, code, reason, message, &violations)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use axum::body::to_bytes;
    use serde_json::json;
    use tonic_types::ErrorDetails;

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
        let (http, _, body) = read(status_response(&status(
            tonic::Code::InvalidArgument,
            "the request has invalid fields",
            "VALIDATION_FAILED",
            &[("username", "too short"), ("email", "not an address")],
        )))
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

        let (http, _, body) = read(status_response(&status(
            tonic::Code::FailedPrecondition,
            "reused",
            "IDEMPOTENCY_KEY_REUSED",
            &[],
        )))
        .await;
        assert_eq!(http, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(body["error"]["code"], "failed_precondition");
        assert_eq!(body["error"]["details"], json!({}));

        let (http, _, body) = read(status_response(&status(
            tonic::Code::Internal,
            "relation \"users\" does not exist",
            "INTERNAL",
            &[],
        )))
        .await;
        assert_eq!(http, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("users")
        );

        let (http, _, body) = read(status_response(&Status::unknown("panic at src/x.rs:1"))).await;
        assert_eq!(http, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "unknown");
        assert_eq!(body["error"]["message"], INTERNAL_MESSAGE);

        let (http, _, body) =
            read(status_response(&Status::unavailable("tcp connect error"))).await;
        assert_eq!(http, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["reason"], "UPSTREAM_UNAVAILABLE");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .contains("tcp")
        );

        let (http, _, body) = read(status_response(&Status::unimplemented("no such method"))).await;
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
        let (http, retry, body) = read(status_response(&limited)).await;
        assert_eq!(http, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(retry.as_deref(), Some("7"));
        assert_eq!(body["error"]["code"], "resource_exhausted");
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
