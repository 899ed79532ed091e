//! What both OpenAPI documents state beyond what their generators know: the constraints the server
//! enforces on what a client sends, and (on REST, whose statuses are listed one by one) every error
//! status the shared layers can answer with. Without them, requests valid by the document were
//! refused and answers were undocumented: schemathesis counted 500+ conformance failures (issue 22).
//!
//! The constraints are the domain's rules restated: ids are positive, amounts are positive minor
//! units, currencies are the contract's three, page sizes are 1 to 100, a username is 3 to 32 of
//! `a-z0-9_`, a password 8 to 128 characters, a full name 1 to 100 (`streambank_domain::user`). They
//! are applied to parameters and to request bodies only (an entry's `amount` in an answer is signed).

use serde_json::{Map, Value, json};

/// The contract's currencies (`streambank_domain::Currency`).
const CURRENCIES: [&str; 3] = ["USD", "EUR", "CAD"];

/// Adds the constraints the server enforces to every parameter and request body of `document`.
pub fn state_constraints(document: &mut Value) {
    let mut body_refs = Vec::new();
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for operation in operations(item) {
                if let Some(parameters) = operation
                    .get_mut("parameters")
                    .and_then(Value::as_array_mut)
                {
                    for parameter in parameters {
                        let name = parameter["name"].as_str().unwrap_or_default().to_owned();
                        if let Some(schema) = parameter.get_mut("schema") {
                            constrain(&name, schema);
                        }
                    }
                }
                if let Some(schema) =
                    operation.pointer_mut("/requestBody/content/application~1json/schema")
                {
                    match schema.get("$ref").and_then(Value::as_str) {
                        Some(reference) => body_refs.push(reference.to_owned()),
                        None => constrain_properties(schema),
                    }
                }
            }
        }
    }
    for reference in body_refs {
        let pointer = reference.trim_start_matches('#');
        if let Some(schema) = document.pointer_mut(pointer) {
            constrain_properties(schema);
        }
    }
}

/// The REST operations' error answers, beyond those their annotations list: `400` where a parameter
/// or a body can be malformed, `401` where a token is needed, `413` with a body, `429` on the rate
/// limited routes, and everywhere `431` (headers over the limit), `500` and `503` (timeout, busy).
pub fn state_error_statuses(document: &mut Value, rate_limited: &[(&str, &str)]) {
    let error = |description: &str| {
        json!({
            "description": description,
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
        })
    };
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in item.iter_mut() {
            if !["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let has_parameters = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            let has_body = operation.get("requestBody").is_some();
            let secured = operation
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let limited = rate_limited.contains(&(method.as_str(), path.as_str()));
            let Some(responses) = operation
                .get_mut("responses")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| error(description));
            };
            if has_parameters || has_body {
                add(
                    "400",
                    "The request is malformed or invalid (`invalid_argument`).",
                );
            }
            if secured {
                add(
                    "401",
                    "The token is missing, invalid, expired or revoked (`unauthenticated`).",
                );
            }
            if has_body {
                add("413", "The body is over the limit (`BODY_TOO_LARGE`).");
            }
            if limited {
                add(
                    "429",
                    "Too many attempts from this address (`RATE_LIMITED`, with `Retry-After`).",
                );
            }
            add(
                "431",
                "The headers are over the limit (`HEADERS_TOO_LARGE`).",
            );
            add(
                "500",
                "An internal error; the body carries no detail, quote `x-request-id`.",
            );
            add(
                "503",
                "The request took too long, or the bank is busy (`TIMEOUT`, `BUSY`).",
            );
        }
    }
}

fn operations(item: &mut Value) -> impl Iterator<Item = &mut Value> {
    item.as_object_mut()
        .into_iter()
        .flat_map(Map::iter_mut)
        .filter(|(method, _)| ["get", "post", "put", "delete", "patch"].contains(&method.as_str()))
        .map(|(_, operation)| operation)
}

fn constrain_properties(schema: &mut Value) {
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for (name, property) in properties.iter_mut() {
            constrain(name, property);
        }
    }
}

/// The rule for a value named `name`, if there is one.
fn constrain(name: &str, schema: &mut Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let integer = is_type(object, "integer");
    if integer && (name == "id" || name.ends_with("_id") || name == "amount") {
        object.insert("minimum".into(), json!(1));
    } else if integer && name == "page_size" {
        object.insert("minimum".into(), json!(1));
        object.insert("maximum".into(), json!(100));
    } else if name == "currency" && is_type(object, "string") {
        object.insert("enum".into(), json!(CURRENCIES));
    } else if name == "username" && is_type(object, "string") {
        object.insert("pattern".into(), json!("^[a-z0-9_]{3,32}$"));
    } else if name == "password" && is_type(object, "string") {
        object.insert("minLength".into(), json!(8));
        object.insert("maxLength".into(), json!(128));
    } else if name == "full_name" && is_type(object, "string") {
        object.insert("minLength".into(), json!(1));
        object.insert("maxLength".into(), json!(100));
    } else if name == "email" && is_type(object, "string") {
        object.insert("format".into(), json!("email"));
    }
}

/// Whether `schema` is of `kind`: `"type": "integer"`, or `["integer", "null"]` for an optional one.
fn is_type(schema: &Map<String, Value>, kind: &str) -> bool {
    match schema.get("type") {
        Some(Value::String(t)) => t == kind,
        Some(Value::Array(types)) => types.iter().any(|t| t == kind),
        _ => false,
    }
}
