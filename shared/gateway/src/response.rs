//! A gRPC response message as the JSON REST answers with: proto field names (snake_case), 64-bit
//! integers as JSON numbers, every field present (defaults included), `Timestamp` as RFC 3339.
//!
//! One correction on top of prost-reflect's proto3 JSON: a field with presence (`optional`, or a
//! message) that is unset comes out as `null`, not missing, because REST's `Option` fields serialize
//! as `null` (`"next_page_token": null`, `"transfer_id": null`), and one client must read both.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use prost_reflect::{
    DynamicMessage, Kind, MessageDescriptor, ReflectMessage as _, SerializeOptions,
};

use super::routes::Route;

fn options() -> SerializeOptions {
    SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false)
}

/// The message as REST's JSON.
pub fn to_json(message: &DynamicMessage) -> Result<serde_json::Value, serde_json::Error> {
    let mut value = message.serialize_with_options(serde_json::value::Serializer, &options())?;
    fill_nulls(&message.descriptor(), &mut value);
    Ok(value)
}

/// Adds `null` for every absent field of `desc` in `value`, recursively.
fn fill_nulls(desc: &MessageDescriptor, value: &mut serde_json::Value) {
    if desc.full_name().starts_with("google.protobuf.") {
        return; // Well-known types have their own JSON forms.
    }
    let serde_json::Value::Object(object) = value else {
        return;
    };
    for field in desc.fields() {
        match object.get_mut(field.name()) {
            None if !field.is_list() && !field.is_map() => {
                object.insert(field.name().to_owned(), serde_json::Value::Null);
            }
            None => {}
            Some(inner) => {
                let kind = if field.is_map() {
                    match field.kind() {
                        Kind::Message(entry) => entry.map_entry_value_field().kind(),
                        other => other,
                    }
                } else {
                    field.kind()
                };
                let Kind::Message(child) = kind else {
                    continue;
                };
                match inner {
                    serde_json::Value::Array(items) if field.is_list() => {
                        items.iter_mut().for_each(|item| fill_nulls(&child, item));
                    }
                    serde_json::Value::Object(entries) if field.is_map() => {
                        entries
                            .values_mut()
                            .for_each(|item| fill_nulls(&child, item));
                    }
                    single => fill_nulls(&child, single),
                }
            }
        }
    }
}

/// Why an answer could not be written as JSON.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("the answer is not a valid {message}: {source}")]
    Decode {
        message: String,
        #[source]
        source: prost::DecodeError,
    },
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The HTTP answer to a successful call whose response message arrived as `bytes`.
pub fn success(route: &Route, bytes: Bytes) -> Result<Response, EncodeError> {
    if route.empty_response() {
        return Ok(route.success.into_response());
    }
    let output = route.output();
    let message =
        DynamicMessage::decode(output.clone(), bytes).map_err(|source| EncodeError::Decode {
            message: output.full_name().to_owned(),
            source,
        })?;
    let mut json = to_json(&message)?;
    if let Some(field) = &route.response_body
        && let serde_json::Value::Object(object) = &mut json
    {
        json = object
            .remove(field.name())
            .unwrap_or(serde_json::Value::Null);
    }
    let body = serde_json::to_vec(&json)?;
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = route.success;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use prost_reflect::Value;
    use serde_json::json;

    use super::*;

    fn message(name: &str) -> DynamicMessage {
        let pool = streambank_proto::descriptor_pool();
        DynamicMessage::new(pool.get_message_by_name(name).expect(name))
    }

    #[test]
    fn unset_optional_fields_are_null_and_integers_are_numbers() {
        let mut entry = message("streambank.v1.Entry");
        entry.set_field_by_name("id", Value::I64(9_007_199_254_740_993));
        entry.set_field_by_name("amount", Value::I64(-1250));
        let mut created = message("google.protobuf.Timestamp");
        created.set_field_by_name("seconds", Value::I64(1_700_000_000));
        created.set_field_by_name("nanos", Value::I32(123_456_000));
        entry.set_field_by_name("created_at", Value::Message(created));
        assert_eq!(
            to_json(&entry).expect("json"),
            json!({
                "id": 9_007_199_254_740_993_i64,
                "account_id": 0,
                "amount": -1250,
                "transfer_id": null,
                "created_at": "2023-11-14T22:13:20.123456Z",
            })
        );

        let mut list = message("streambank.v1.ListEntriesResponse");
        list.set_field_by_name(
            "entries",
            Value::List(vec![Value::Message(message("streambank.v1.Entry"))]),
        );
        let json = to_json(&list).expect("json");
        assert_eq!(json["next_page_token"], serde_json::Value::Null);
        assert_eq!(json["entries"][0]["transfer_id"], serde_json::Value::Null);
        assert_eq!(json["entries"][0]["created_at"], serde_json::Value::Null);
    }

    /// `success` by both paths on one answer: the same status and JSON, or both an error.
    #[tokio::test]
    async fn an_answer_is_its_json_and_a_corrupt_answer_is_a_500_without_its_cause() {
        use axum::body::to_bytes;
        use axum::http::StatusCode;
        use prost::Message as _;

        use crate::error::{GatewayError, PlainErrors};
        use crate::routes::RouteTable;

        let routes = RouteTable::from_pool(&streambank_proto::descriptor_pool()).expect("routes");
        let get_account = routes
            .routes()
            .iter()
            .find(|r| r.grpc_path.as_str() == "/streambank.v1.AccountService/GetAccount")
            .expect("GetAccount route");
        let mut account = message("streambank.v1.Account");
        account.set_field_by_name("id", Value::I64(17));
        account.set_field_by_name("currency", Value::String("USD".into()));
        let bytes = Bytes::from(account.encode_to_vec());

        let response = success(get_account, bytes).expect("a valid answer");
        assert_eq!(response.status(), StatusCode::OK);
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["id"], 17);
        assert_eq!(body["currency"], "USD");
        assert_eq!(body["balance"], 0);

        // Field 1 (id) as a varint that never ends.
        let corrupt = Bytes::from_static(&[0x08, 0xff]);
        let error = success(get_account, corrupt).expect_err("a corrupt answer");
        let response = GatewayError::Encode(error).respond(&PlainErrors);
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(body["error"]["code"], "internal");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(
            !message.contains("varint") && !message.contains("Account"),
            "the cause stays in the log: {message}"
        );
    }
}
