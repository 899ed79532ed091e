//! The contract's shape for the answers tonic writes itself, before any method runs.

use axum::http::Request;
use streambank_domain::FieldViolation;
use tonic::Status;

use super::super::error;
use super::{Answer, Around, Inner, Payload};
use crate::contract::Reason;

/// tonic answers some requests it cannot read or route with a bare status and its own text, before
/// any method runs; this layer gives those answers the contract's shape, following gRPC's status-code
/// document where it speaks:
///
/// - bytes that are not the method's protobuf message (a wrong type, invalid UTF-8 in a string, a
///   truncated varint) are the caller's mistake: `InvalidArgument`, reason `MALFORMED_REQUEST`, with
///   the field when prost names one, as REST answers a body it cannot parse;
/// - a unary call with no request message is a cardinality violation: `Unimplemented`, reason
///   `REQUEST_CARDINALITY`;
/// - a broken frame (a compressed flag without `grpc-encoding`, a stream that ends inside a frame) is a
///   protocol violation, which the gRPC documents answer `Internal`: it stays `Internal`, with tonic's
///   message and reason `PROTOCOL_ERROR`, so that it cannot be mistaken for a fault of ours;
/// - a message over the size limit is `ResourceExhausted` (tonic says `OutOfRange`), reason
///   `MESSAGE_TOO_LARGE`;
/// - a path that names no method stays `Unimplemented`, with a message naming it and reason
///   `METHOD_NOT_FOUND`; a compression the server does not support stays `Unimplemented`, reason
///   `COMPRESSION_UNSUPPORTED`.
///
/// StreamBank's own statuses always carry an `ErrorInfo` (`grpc-status-details-bin`), so a detail-less
/// status in the response headers is tonic's (or health's and reflection's, which are left alone).
/// Such answers are trailers-only, so the headers are all there is to read.
#[derive(Debug, Clone, Copy, Default)]
pub struct Restate;

impl Around for Restate {
    fn around<S: Inner<B, R>, B: Payload, R: Payload + Default>(
        &self,
        mut inner: S,
        request: Request<B>,
    ) -> Answer<R, S::Error> {
        let path = request.uri().path().to_owned();
        let response = inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            let headers = response.headers();
            if headers.contains_key(Status::GRPC_STATUS_DETAILS) {
                return Ok(response);
            }
            let Some(status) = Status::from_header_map(headers).and_then(|s| restate(&s, &path))
            else {
                return Ok(response);
            };
            let restated = status.into_http::<R>();
            let headers = response.headers_mut();
            for name in [
                Status::GRPC_STATUS,
                Status::GRPC_MESSAGE,
                Status::GRPC_STATUS_DETAILS,
            ] {
                headers.remove(name);
            }
            headers.extend(restated.into_parts().0.headers);
            Ok(response)
        })
    }
}

/// The contract's status for one of tonic's detail-less answers to a call of `path` (see
/// [`Restate`]), or `None` for a status that is not one of them.
pub fn restate(status: &Status, path: &str) -> Option<Status> {
    let message = status.message();
    match status.code() {
        tonic::Code::Internal => Some(restate_internal(message)),
        // The status-code document: a message larger than the configured limit is RESOURCE_EXHAUSTED.
        tonic::Code::OutOfRange
            if message.starts_with("Error, decoded message length too large") =>
        {
            Some(error::refusal(
                Reason::MessageTooLarge,
                format!("the request message is larger than the server accepts: {message}"),
                &[],
            ))
        }
        // The status-code document: a compression the server does not support is UNIMPLEMENTED; tonic
        // lists what it accepts in `grpc-accept-encoding`, which stays in the headers.
        tonic::Code::Unimplemented if message.starts_with("Content is compressed with") => {
            Some(error::refusal(Reason::CompressionUnsupported, message, &[]))
        }
        // The router's fallback for a path that names no method.
        tonic::Code::Unimplemented if message.is_empty() => Some(error::refusal(
            Reason::MethodNotFound,
            format!("no method {path}; the server's reflection service lists the methods"),
            &[],
        )),
        _ => None,
    }
}

fn restate_internal(message: &str) -> Status {
    if let Some(decode) = message.strip_prefix("failed to decode Protobuf message: ") {
        // prost writes `Message.field: ` for each level, innermost first, then what was wrong.
        let mut rest = decode;
        let mut fields = Vec::new();
        while let Some((level, tail)) = rest.split_once(": ")
            && let Some((_, field)) = level.split_once('.')
            && !level.contains(' ')
        {
            fields.push(field);
            rest = tail;
        }
        fields.reverse();
        let violations: Vec<FieldViolation> = if fields.is_empty() {
            Vec::new()
        } else {
            vec![FieldViolation {
                field: fields.join("."),
                description: rest.to_owned(),
            }]
        };
        return error::refusal(
            Reason::MalformedRequest,
            format!("the request is not a valid protobuf message of the method's type: {decode}"),
            &violations,
        );
    }
    if message == "Missing request message." {
        return error::refusal(
            Reason::RequestCardinality,
            "a unary method takes exactly one request message, and the call sent none",
            &[],
        );
    }
    error::refusal(Reason::ProtocolError, message, &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tonics_bare_internals_are_restated_in_the_contract() {
        use tonic_types::StatusExt as _;

        let utf8 = restate_internal(
            "failed to decode Protobuf message: LoginRequest.username: invalid string value: data is not UTF-8 encoded",
        );
        assert_eq!(utf8.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            utf8.get_details_error_info().expect("info").reason,
            "MALFORMED_REQUEST"
        );
        let violations = utf8
            .get_details_bad_request()
            .expect("bad request")
            .field_violations;
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].field, "username");
        assert_eq!(
            violations[0].description,
            "invalid string value: data is not UTF-8 encoded"
        );

        // Innermost level first in prost's text, so the path is read backwards.
        let nested = restate_internal(
            "failed to decode Protobuf message: Money.currency: Deposit.amount: invalid string value: data is not UTF-8 encoded",
        );
        let violations = nested
            .get_details_bad_request()
            .expect("bad request")
            .field_violations;
        assert_eq!(violations[0].field, "amount.currency");

        let varint = restate_internal("failed to decode Protobuf message: invalid varint");
        assert_eq!(varint.code(), tonic::Code::InvalidArgument);
        assert!(varint.get_details_bad_request().is_none());

        let none = restate_internal("Missing request message.");
        assert_eq!(none.code(), tonic::Code::Unimplemented);
        assert_eq!(
            none.get_details_error_info().expect("info").reason,
            "REQUEST_CARDINALITY"
        );

        let frame = restate_internal("Unexpected EOF decoding stream.");
        assert_eq!(frame.code(), tonic::Code::Internal);
        assert_eq!(frame.message(), "Unexpected EOF decoding stream.");
        assert_eq!(
            frame.get_details_error_info().expect("info").reason,
            "PROTOCOL_ERROR"
        );

        let path = "/streambank.v1.UserService/Login";
        let large = restate(
            &Status::out_of_range(
                "Error, decoded message length too large: found 4194305 bytes, the limit is: 4194304 bytes",
            ),
            path,
        )
        .expect("restated");
        assert_eq!(large.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            large.get_details_error_info().expect("info").reason,
            "MESSAGE_TOO_LARGE"
        );
        let unknown = restate(&Status::unimplemented(""), "/a.B/C").expect("restated");
        assert_eq!(unknown.code(), tonic::Code::Unimplemented);
        assert!(
            unknown.message().contains("/a.B/C"),
            "{}",
            unknown.message()
        );
        let gzip = restate(
            &Status::unimplemented("Content is compressed with `gzip` which isn't supported"),
            path,
        )
        .expect("restated");
        assert_eq!(gzip.code(), tonic::Code::Unimplemented);
        assert_eq!(
            gzip.get_details_error_info().expect("info").reason,
            "COMPRESSION_UNSUPPORTED"
        );
        // Anything else is left as it is.
        assert!(restate(&Status::not_found("unknown service"), path).is_none());
        assert!(restate(&Status::out_of_range("page 7"), path).is_none());
    }
}
