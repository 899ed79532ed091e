//! A request's JSON body as a protobuf message: the whole body (`body: "*"`), or one field's value
//! (`body: "field"`), read as REST reads its bodies. proto3's JSON mapping is more lenient than REST's
//! types (a number in a string, `null` for a default), so such values are refused first, in REST's
//! words; a syntax or type error names the field it broke in, through `serde_path_to_error`.

use prost_reflect::{
    DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use serde_path_to_error::Track;

use super::routes::is_plain_message;
use crate::error::RequestError;

/// Unknown fields are ignored, as REST's request types ignore them.
pub(crate) const OPTIONS: DeserializeOptions = DeserializeOptions::new().deny_unknown_fields(false);

/// The whole body as a message of type `desc`.
///
/// proto3's JSON mapping also reads a number from a string (`"amount": "5"`) and a field's default
/// from `null`; REST's types take neither, so [`numbers_are_numbers`] refuses both for number and
/// boolean fields first, in REST's words, and the two listeners answer such a body alike.
pub fn decode_json(desc: &MessageDescriptor, bytes: &[u8]) -> Result<DynamicMessage, RequestError> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Err(decode_json_directly(desc, bytes)
            .err()
            .unwrap_or_else(|| RequestError::malformed("body", "the body is not JSON")));
    };
    numbers_are_numbers(desc, &value, "")?;
    let mut track = Track::new();
    DynamicMessage::deserialize_with_options(
        desc.clone(),
        serde_path_to_error::Deserializer::new(value, &mut track),
        &OPTIONS,
    )
    .map_err(|e| malformed_at(&track.path().to_string(), &e))
}

/// The body straight into the message, for its error: a syntax error named by the field it broke
/// in, as REST's decoder names it.
fn decode_json_directly(
    desc: &MessageDescriptor,
    bytes: &[u8],
) -> Result<DynamicMessage, RequestError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let mut track = Track::new();
    let result = DynamicMessage::deserialize_with_options(
        desc.clone(),
        serde_path_to_error::Deserializer::new(&mut de, &mut track),
        &OPTIONS,
    );
    let message = result.map_err(|e| malformed_at(&track.path().to_string(), &e))?;
    de.end()
        .map_err(|e| RequestError::malformed("body", describe_json_error(&e)))?;
    Ok(message)
}

/// Refuses a string or `null` where `desc` has a number or a boolean, naming the field by its dotted
/// path (`amount`, `items[2].id`). Anything else is left to prost-reflect's decoder.
fn numbers_are_numbers(
    desc: &MessageDescriptor,
    value: &serde_json::Value,
    path: &str,
) -> Result<(), RequestError> {
    let serde_json::Value::Object(object) = value else {
        return Ok(());
    };
    for (key, value) in object {
        let Some(field) = desc
            .get_field_by_json_name(key)
            .or_else(|| desc.get_field_by_name(key))
        else {
            continue;
        };
        let kind = field.kind();
        let items = match value {
            serde_json::Value::Array(items) if field.is_list() => items.as_slice(),
            _ => std::slice::from_ref(value),
        };
        // Built only for a nested message or an error: most bodies are flat and right.
        let at = |i: usize| {
            let name = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if field.is_list() {
                format!("{name}[{i}]")
            } else {
                name
            }
        };
        for (i, item) in items.iter().enumerate() {
            if let Kind::Message(inner) = &kind {
                if is_plain_message(&kind) && !field.is_map() {
                    numbers_are_numbers(inner, item, &at(i))?;
                }
                continue;
            }
            let Some(expected) = rust_name(&kind) else {
                continue;
            };
            let found = match item {
                serde_json::Value::String(s) => format!("string {s:?}"),
                serde_json::Value::Null => "null".to_owned(),
                _ => continue,
            };
            return Err(RequestError::malformed(
                &at(i),
                format!("invalid type: {found}, expected {expected}"),
            ));
        }
    }
    Ok(())
}

/// How serde names the Rust type REST decodes a number or boolean field into.
fn rust_name(kind: &Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => "i64",
        Kind::Uint64 | Kind::Fixed64 => "u64",
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => "i32",
        Kind::Uint32 | Kind::Fixed32 => "u32",
        Kind::Double => "f64",
        Kind::Float => "f32",
        Kind::Bool => "a boolean",
        _ => return None,
    })
}

/// The body as the value of one field (`body: "field"`).
pub(crate) fn decode_field(field: &FieldDescriptor, bytes: &[u8]) -> Result<Value, RequestError> {
    if let Kind::Message(m) = field.kind()
        && is_plain_message(&field.kind())
        && !field.is_list()
        && !field.is_map()
    {
        return decode_json(&m, bytes).map(Value::Message);
    }
    let value: serde_json::Value = {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde::Deserialize::deserialize(&mut de)
            .map_err(|e| RequestError::malformed("body", describe_json_error(&e)))?;
        de.end()
            .map_err(|e| RequestError::malformed("body", describe_json_error(&e)))?;
        value
    };
    let mut object = serde_json::Map::new();
    object.insert(field.name().to_owned(), value);
    let mut track = Track::new();
    let holder = DynamicMessage::deserialize_with_options(
        field.parent_message().clone(),
        serde_path_to_error::Deserializer::new(serde_json::Value::Object(object), &mut track),
        &OPTIONS,
    )
    .map_err(|e| {
        let path = track.path().to_string();
        // The path starts with the field's own name, which the client never wrote.
        let inner = path
            .strip_prefix(field.name())
            .map(|rest| rest.trim_start_matches('.'))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(".");
        malformed_at(inner, &e)
    })?;
    Ok(holder.get_field(field).into_owned())
}

fn malformed_at(path: &str, e: &serde_json::Error) -> RequestError {
    let field = if path == "." { "body" } else { path };
    RequestError::malformed(field, describe_json_error(e))
}

/// serde_json's message without its "at line 1 column 17" suffix (a JSON body is one line or many;
/// the field says where).
pub fn describe_json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}
