//! `From<service::Error> for tonic::Status`: the contract's error for gRPC callers.
//!
//! Every status carries a `google.rpc.ErrorInfo` with the same `reason` REST puts in its body (domain
//! `streambank`), and validation errors carry a `google.rpc.BadRequest` listing every bad field. The
//! gateway turns these details back into the REST error body, so both transports answer alike. An
//! internal error is logged here, once, and the caller sees a generic message.

use std::collections::HashMap;

use streambank_domain::FieldViolation;
use streambank_service::Error;
use tonic::Status;
use tonic_types::{ErrorDetails, StatusExt as _};

use crate::contract::{INTERNAL_MESSAGE_GRPC, Reason};

/// The `ErrorInfo.domain` of every StreamBank status.
pub const DOMAIN: &str = "streambank";

/// A service-layer failure as a gRPC status.
pub fn status(error: Error) -> Status {
    let code = crate::contract::error::grpc_code(error.code());
    let message = match &error {
        Error::Internal(cause) => {
            tracing::error!(error.cause_chain = ?cause, error.message = %cause, "call failed");
            INTERNAL_MESSAGE_GRPC.to_owned()
        }
        other => other.to_string(),
    };
    with_reason(code, message, error.reason(), error.violations())
}

/// A status with StreamBank's details: the reason, and the bad fields if any.
pub fn with_reason(
    code: tonic::Code,
    message: impl Into<String>,
    reason: &str,
    violations: &[FieldViolation],
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, HashMap::new());
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(code, message, details)
}

/// A status for a transport-level reason.
pub fn refusal(
    reason: Reason,
    message: impl Into<String>,
    violations: &[FieldViolation],
) -> Status {
    with_reason(reason.grpc_code(), message, reason.as_str(), violations)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_carry_the_reason_and_every_bad_field() {
        let s = status(Error::InsufficientFunds);
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        let info = s.get_details_error_info().expect("error info");
        assert_eq!(info.reason, "INSUFFICIENT_FUNDS");
        assert_eq!(info.domain, DOMAIN);

        let s = status(Error::Validation(vec![
            FieldViolation {
                field: "username".into(),
                description: "too long".into(),
            },
            FieldViolation {
                field: "email".into(),
                description: "not an address".into(),
            },
        ]));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let fields: Vec<String> = s
            .get_details_bad_request()
            .expect("bad request")
            .field_violations
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["username", "email"]);

        let s = status(Error::Internal(anyhow::anyhow!(
            "relation \"users\" is locked"
        )));
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("users"), "{}", s.message());
    }
}
