//! Everything a REST handler can fail with, answered in the contract's error shape
//! ([`crate::contract::error`]): a service-layer error with its own reason, or one of the
//! transport's ([`Reason`]).

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use streambank_domain::FieldViolation;
use streambank_service::Error;

use crate::contract::Reason;
pub use crate::contract::error::{ErrorBody, ErrorDetail};
use crate::contract::error::{reason_response, service_response};

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
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let reason = match &self {
            ApiError::Service(e) => return service_response(e),
            ApiError::Malformed(_) => Reason::MalformedRequest,
            ApiError::BodyTooLarge { .. } => Reason::BodyTooLarge,
            ApiError::HeadersTooLarge { .. } => Reason::HeadersTooLarge,
            ApiError::MissingToken => Reason::TokenMissing,
            ApiError::RateLimited { .. } => Reason::RateLimited,
            ApiError::RouteNotFound => Reason::RouteNotFound,
            ApiError::MethodNotAllowed => Reason::MethodNotAllowed,
            ApiError::Timeout => Reason::Timeout,
        };
        let violations: &[FieldViolation] = match &self {
            ApiError::Malformed(v) => v,
            _ => &[],
        };
        let mut response = reason_response(reason, self.to_string(), violations);
        if let ApiError::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
