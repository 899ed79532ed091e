//! An HTTP request as the route's protobuf request message, following `google.api.http`: the JSON body
//! (all of it for `body: "*"`, one field for `body: "field"`), then the path variables, then the query
//! string for every field neither binds.
//!
//! Decoding failures are REST's: `400 invalid_argument MALFORMED_REQUEST` naming the field. JSON is
//! read with proto field names (lowerCamelCase is accepted too, as proto3 JSON allows), unknown fields
//! are ignored and missing ones take their defaults, exactly as REST's request types do; a wrong type
//! names the field through `serde_path_to_error`. Path and query values are parsed by the field's kind
//! with the same parsers (and so the same messages) as REST's `serde_urlencoded` query decoding.

use std::collections::HashSet;

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage as _, Value,
};

use super::body::{OPTIONS, decode_field, decode_json, describe_json_error};
use super::routes::{Body, Route, is_plain_message, resolve};
use super::template::NotUtf8;
use crate::error::RequestError;

/// What the request message is built from.
#[derive(Debug, Clone, Copy)]
pub struct Parts<'a> {
    /// Each path variable's dotted field path and decoded value.
    pub captures: &'a [(String, Result<String, NotUtf8>)],
    /// The raw query string.
    pub query: Option<&'a str>,
    /// The body, for a route that has one (`None` otherwise).
    pub body: Option<&'a [u8]>,
}

/// Builds the request message of `route`.
pub fn message(route: &Route, parts: Parts<'_>) -> Result<DynamicMessage, RequestError> {
    let input = route.input();
    let mut message = match (&route.body, parts.body) {
        (Body::Whole, Some(bytes)) => decode_json(&input, bytes)?,
        (Body::Field(field), Some(bytes)) => {
            let mut message = DynamicMessage::new(input.clone());
            message.set_field(field, decode_field(field, bytes)?);
            message
        }
        _ => DynamicMessage::new(input.clone()),
    };
    for (path, raw) in parts.captures {
        let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
        // Checked when the route table was built; a failure here means the pool changed under us.
        let field = resolve(&input, &segments)
            .map_err(|_| RequestError::malformed(path, "is not a field of the request"))?;
        let value = raw
            .as_deref()
            .map_err(|NotUtf8| "is not UTF-8 once percent-decoded".to_owned())
            .and_then(|raw| parse(&field, raw))
            .map_err(|description| {
                RequestError::malformed(path, path_description(&field, description))
            })?;
        set(&mut message, &segments, &field, value, false);
    }
    if route.body != Body::Whole
        && let Some(query) = parts.query
    {
        apply_query(route, &input, &mut message, query)?;
    }
    Ok(message)
}

/// Query parameters, for every field the path and the body leave free. Unknown names are ignored, as
/// REST ignores them; a repeated field takes every occurrence; a singular one given twice is an error,
/// as REST's decoder says.
fn apply_query(
    route: &Route,
    input: &MessageDescriptor,
    message: &mut DynamicMessage,
    query: &str,
) -> Result<(), RequestError> {
    let mut seen = HashSet::new();
    for (key, raw) in form_urlencoded::parse(query.as_bytes()) {
        let segments: Vec<String> = key.split('.').map(str::to_owned).collect();
        let Ok(field) = resolve(input, &segments) else {
            continue;
        };
        let bound = input
            .get_field_by_name(&segments[0])
            .is_some_and(|top| route.binds(&top));
        if bound || field.is_map() || is_plain_message(&field.kind()) {
            continue;
        }
        if !field.is_list() && !seen.insert(key.to_string()) {
            return Err(RequestError::malformed(
                "query",
                format!("duplicate field `{key}`"),
            ));
        }
        let value = parse(&field, &raw).map_err(|d| RequestError::malformed(&key, d))?;
        set(message, &segments, &field, value, field.is_list());
    }
    Ok(())
}

/// Sets (or, for a repeated field, appends to) the field at `path`, creating the messages on the way.
fn set(
    message: &mut DynamicMessage,
    path: &[String],
    field: &FieldDescriptor,
    value: Value,
    append: bool,
) {
    let mut current = message;
    for name in &path[..path.len().saturating_sub(1)] {
        let Some(parent) = current.descriptor().get_field_by_name(name) else {
            return;
        };
        match current.get_field_mut(&parent) {
            Value::Message(m) => current = m,
            _ => return,
        }
    }
    if append {
        if let Value::List(list) = current.get_field_mut(field) {
            list.push(value);
        }
    } else {
        current.set_field(field, value);
    }
}

/// A path or query value, parsed by the field's kind. Integers, floats and booleans use the standard
/// parsers, whose messages REST's query decoder gives too (`invalid digit found in string`).
fn parse(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    let text = |e: &dyn std::fmt::Display| e.to_string();
    Ok(match field.kind() {
        Kind::Double => Value::F64(raw.parse().map_err(|e| text(&e))?),
        Kind::Float => Value::F32(raw.parse().map_err(|e| text(&e))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            Value::I32(raw.parse().map_err(|e| text(&e))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            Value::I64(raw.parse().map_err(|e| text(&e))?)
        }
        Kind::Uint32 | Kind::Fixed32 => Value::U32(raw.parse().map_err(|e| text(&e))?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(raw.parse().map_err(|e| text(&e))?),
        Kind::Bool => Value::Bool(raw.parse().map_err(|e| text(&e))?),
        Kind::String => Value::String(raw.to_owned()),
        // Base64 bytes, enum names and the well-known types with a string form (Timestamp, wrappers)
        // are read as the JSON string they would be in a body.
        Kind::Bytes | Kind::Enum(_) | Kind::Message(_) => element_from_json(field, raw)?,
    })
}

/// One value of `field` from a JSON string, through the proto3 JSON decoder.
fn element_from_json(field: &FieldDescriptor, raw: &str) -> Result<Value, String> {
    let string = serde_json::Value::String(raw.to_owned());
    let value = if field.is_list() {
        serde_json::Value::Array(vec![string])
    } else {
        string
    };
    let mut object = serde_json::Map::new();
    object.insert(field.name().to_owned(), value);
    let holder = DynamicMessage::deserialize_with_options(
        field.parent_message().clone(),
        serde_json::Value::Object(object),
        &OPTIONS,
    )
    .map_err(|e| describe_json_error(&e))?;
    let value = holder.get_field(field).into_owned();
    match value {
        Value::List(mut items) if field.is_list() => items.pop().ok_or_else(|| "no value".into()),
        other => Ok(other),
    }
}

/// REST says `must be a positive integer id` for any id in a path it cannot read; so does the gateway
/// for integer path variables named like ids (the gRPC server says the same for `0` and negatives).
fn path_description(field: &FieldDescriptor, description: String) -> String {
    let integer = matches!(
        field.kind(),
        Kind::Int32
            | Kind::Sint32
            | Kind::Sfixed32
            | Kind::Int64
            | Kind::Sint64
            | Kind::Sfixed64
            | Kind::Uint32
            | Kind::Fixed32
            | Kind::Uint64
            | Kind::Fixed64
    );
    if integer && (field.name() == "id" || field.name().ends_with("_id")) {
        "must be a positive integer id".to_owned()
    } else {
        description
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;

    use super::super::routes::{Lookup, RouteTable};
    use super::super::template::Captures;
    use super::*;

    fn route<'a>(table: &'a RouteTable, method: Method, path: &str) -> (&'a Route, Captures) {
        match table.lookup(&method, path) {
            Lookup::Found(route, captures) => (route, captures),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn table() -> RouteTable {
        RouteTable::from_pool(&streambank_proto::descriptor_pool()).expect("table")
    }

    fn violation(e: RequestError) -> (String, String) {
        match e {
            RequestError::Malformed(v) => (v[0].field.clone(), v[0].description.clone()),
            other => panic!("not malformed: {other:?}"),
        }
    }

    fn field(message: &DynamicMessage, name: &str) -> Value {
        message.get_field_by_name(name).expect(name).into_owned()
    }

    #[test]
    fn the_body_then_the_path_fill_the_message() {
        let table = table();
        let (deposit, captures) = route(&table, Method::POST, "/v1/accounts/7/deposits");
        let body = br#"{"amount": 1250, "currency": "USD", "id": 99, "unknown": {"x": 1}}"#;
        let message = message(
            deposit,
            Parts {
                captures: &captures,
                query: Some("amount=1"),
                body: Some(body),
            },
        )
        .expect("decodes");
        assert_eq!(
            field(&message, "id"),
            Value::I64(7),
            "the path wins over the body"
        );
        assert_eq!(
            field(&message, "amount"),
            Value::I64(1250),
            "no query on body:*"
        );
        assert_eq!(field(&message, "currency"), Value::String("USD".into()));

        let missing = super::message(
            deposit,
            Parts {
                captures: &captures,
                query: None,
                body: Some(b"{}"),
            },
        )
        .expect("missing fields take defaults");
        assert_eq!(field(&missing, "amount"), Value::I64(0));
    }

    #[test]
    fn bad_bodies_name_the_field() {
        let table = table();
        let (transfer, captures) = route(&table, Method::POST, "/v1/transfers");
        let decode = |body: &[u8]| {
            super::message(
                transfer,
                Parts {
                    captures: &captures,
                    query: None,
                    body: Some(body),
                },
            )
        };
        let (f, _) = violation(decode(br#"{"amount": "lots"}"#).expect_err("a string"));
        assert_eq!(f, "amount");
        let (f, _) =
            violation(decode(br#"{"amount": 99999999999999999999999}"#).expect_err("too big"));
        assert_eq!(f, "amount");
        let (f, _) =
            violation(decode(br#"{"amount": 9223372036854775808}"#).expect_err("i64::MAX + 1"));
        assert_eq!(f, "amount");
        let (f, _) = violation(decode(br#"{"amount": 1.5}"#).expect_err("a fraction"));
        assert_eq!(f, "amount");
        let (f, d) = violation(decode(b"").expect_err("empty"));
        assert_eq!(
            (f.as_str(), d.as_str()),
            ("body", "EOF while parsing a value")
        );
        let (f, _) = violation(decode(b"[1]").expect_err("not an object"));
        assert_eq!(f, "body");
        let (f, _) = violation(decode(br#"{"amount": 1} x"#).expect_err("trailing"));
        assert_eq!(f, "body");
        // proto3 JSON would read these; REST's types do not, so neither does the gateway.
        assert_eq!(
            violation(decode(br#"{"amount": "5"}"#).expect_err("a number as a string")),
            (
                "amount".into(),
                r#"invalid type: string "5", expected i64"#.into()
            )
        );
        assert_eq!(
            violation(decode(br#"{"from_account_id": null}"#).expect_err("null")),
            (
                "from_account_id".into(),
                "invalid type: null, expected i64".into()
            )
        );
        // A syntax error is still named by the field it broke in.
        let (f, _) = violation(decode(br#"{"amount": 1, "currency": "US"#).expect_err("cut short"));
        assert_eq!(f, "currency");
    }

    #[test]
    fn a_body_field_rule_fills_that_field_and_the_query_the_rest() {
        use streambank_proto::google_api::HttpRule;
        use streambank_proto::google_api::http_rule::Pattern;

        let pool = streambank_proto::descriptor_pool();
        let deposit = pool
            .get_service_by_name("streambank.v1.AccountService")
            .and_then(|s| s.methods().find(|m| m.name() == "Deposit"))
            .expect("Deposit");
        let rule = HttpRule {
            pattern: Some(Pattern::Put("/v1/accounts/{id}/currency".to_owned())),
            body: "currency".to_owned(),
            ..HttpRule::default()
        };
        let route = super::super::routes::route(&deposit, &rule, axum::http::StatusCode::OK)
            .expect("route");
        let captures = [("id".to_owned(), Ok("3".to_owned()))];
        let message = message(
            &route,
            Parts {
                captures: &captures,
                query: Some("amount=40&currency=EUR"),
                body: Some(br#""CAD""#),
            },
        )
        .expect("decodes");
        assert_eq!(field(&message, "id"), Value::I64(3));
        assert_eq!(field(&message, "amount"), Value::I64(40));
        assert_eq!(
            field(&message, "currency"),
            Value::String("CAD".into()),
            "the body field is no query parameter"
        );
        let e = super::message(
            &route,
            Parts {
                captures: &captures,
                query: None,
                body: Some(b"12"),
            },
        )
        .expect_err("a number is no currency");
        assert_eq!(violation(e).0, "body");
    }

    #[test]
    fn path_and_query_values_are_parsed_by_kind() {
        let table = table();
        let (entries, captures) = route(&table, Method::GET, "/v1/accounts/12/entries");
        let message = message(
            entries,
            Parts {
                captures: &captures,
                query: Some("page_size=5&page_token=abc&id=99&nope=1"),
                body: None,
            },
        )
        .expect("decodes");
        assert_eq!(
            field(&message, "id"),
            Value::I64(12),
            "id is bound by the path"
        );
        assert_eq!(field(&message, "page_size"), Value::I64(5));
        assert_eq!(field(&message, "page_token"), Value::String("abc".into()));

        let (bad, captures) = route(&table, Method::GET, "/v1/accounts/abc/entries");
        let e = super::message(
            bad,
            Parts {
                captures: &captures,
                query: None,
                body: None,
            },
        )
        .expect_err("abc is no id");
        assert_eq!(
            violation(e),
            ("id".into(), "must be a positive integer id".into())
        );

        // Not UTF-8 once decoded: the route is found, and the id is refused as REST refuses it.
        let (bad, captures) = route(&table, Method::GET, "/v1/accounts/%FF%FE/entries");
        let e = super::message(
            bad,
            Parts {
                captures: &captures,
                query: None,
                body: None,
            },
        )
        .expect_err("%FF%FE is no id");
        assert_eq!(
            violation(e),
            ("id".into(), "must be a positive integer id".into())
        );

        let e = super::message(
            entries,
            Parts {
                captures: &[("id".into(), Ok("1".into()))],
                query: Some("page_size=ten"),
                body: None,
            },
        )
        .expect_err("ten is no number");
        assert_eq!(
            violation(e),
            ("page_size".into(), "invalid digit found in string".into())
        );

        let e = super::message(
            entries,
            Parts {
                captures: &[("id".into(), Ok("1".into()))],
                query: Some("page_size=1&page_size=2"),
                body: None,
            },
        )
        .expect_err("twice");
        assert_eq!(violation(e).0, "query");

        let (list, captures) = route(&table, Method::GET, "/v1/transfers");
        let e = super::message(
            list,
            Parts {
                captures: &captures,
                query: Some("account_id=99999999999999999999"),
                body: None,
            },
        )
        .expect_err("beyond i64");
        assert_eq!(violation(e).0, "account_id");
    }
}
