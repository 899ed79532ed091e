//! The gateway's OpenAPI 3.1 document, generated from the same descriptors as its routes, so the two
//! cannot disagree: one operation per HTTP binding, path and query parameters from the template and
//! the request fields, request bodies and response schemas from the message descriptors, and the
//! proto comments as descriptions. Served at `/openapi.json`, with Swagger UI (vendored assets) at
//! `/swagger/`; the committed copy `docs/openapi/gateway.json` is compared with it by a test.
//!
//! The JSON it describes is the gateway's, which is REST's: snake_case names, 64-bit integers as
//! numbers (`integer`/`int64`), `Timestamp` as an RFC 3339 `date-time`, unset `optional` fields as
//! `null`, `google.protobuf.Empty` as `204 No Content`. Every method needs a bearer token except the
//! public ones the caller names. What the server enforces beyond the descriptors (value ranges, say) is
//! the caller's to add to the document.
//!
//! Objects are `serde_json` maps, which keep their keys sorted, so the output is deterministic.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_reflect::{DescriptorPool, FieldDescriptor, FileDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value, json};

use super::routes::{Body, Route, RouteTable, is_empty_message, is_plain_message};

/// How deep query parameters follow nested messages (`a.b.c`).
const MAX_QUERY_DEPTH: usize = 3;

/// The document for `routes`; every method but the `public_methods` (gRPC paths,
/// `/package.Service/Method`) needs a bearer token.
pub fn document(pool: &DescriptorPool, routes: &RouteTable, public_methods: &[&str]) -> Value {
    let schemas = Schemas::collect(routes);
    let mut paths: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    let mut bindings: HashMap<String, usize> = HashMap::new();
    for route in routes.routes() {
        let n = bindings
            .entry(route.method.full_name().to_owned())
            .or_default();
        let mut operation = schemas.operation(route, *n);
        if !public_methods.contains(&route.grpc_path.as_str()) {
            operation["security"] = json!([{ "bearer": [] }]);
        }
        *n += 1;
        paths
            .entry(route.template.openapi_path())
            .or_default()
            .insert(route.http_method.as_str().to_ascii_lowercase(), operation);
    }

    let mut components = schemas.components();
    components.insert("ErrorBody".into(), error_body_schema());
    components.insert("ErrorDetail".into(), error_detail_schema());

    let tags: Vec<Value> = streambank_proto::SERVICES
        .iter()
        .filter_map(|name| pool.get_service_by_name(name))
        .map(|service| {
            let mut tag = json!({ "name": service.name() });
            // The service's comment, else the comment on the file's `package` line.
            let description = comment(&service.parent_file(), service.path())
                .or_else(|| comment(&service.parent_file(), &[2]));
            if let Some(description) = description {
                tag["description"] = Value::String(description);
            }
            tag
        })
        .collect();

    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "StreamBank HTTP/JSON gateway",
            "version": "1.0.0",
            "description": "The gRPC API (package streambank.v1) as HTTP/JSON, transcoded by the gateway from the \
                            google.api.http rules: the same paths, JSON and errors as the REST API. Errors have \
                            the shape {\"error\": {\"code\", \"reason\", \"message\", \"details\"}}.",
            "license": { "name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0" },
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "PASETO or JWT" },
            },
        },
        "tags": tags,
    })
}

/// Where a message is used, which decides whether its schema lists required fields.
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    input: bool,
    output: bool,
}

/// The messages the document refers to, and their component names.
#[derive(Debug)]
struct Schemas {
    messages: BTreeMap<String, (MessageDescriptor, Usage)>,
    names: HashMap<String, String>,
}

impl Schemas {
    fn collect(routes: &RouteTable) -> Self {
        let mut messages = BTreeMap::new();
        for route in routes.routes() {
            match &route.body {
                // With path variables the body schema is inline (the message less those fields), so
                // the message itself is no component; what its other fields reach is.
                Body::Whole if !path_bound(route).is_empty() => {
                    let bound = path_bound(route);
                    for field in route.input().fields() {
                        if !bound.contains(&field.name()) {
                            walk_field(&field, true, &mut messages);
                        }
                    }
                }
                Body::Whole => walk(&route.input(), true, &mut messages),
                Body::Field(field) => walk_field(field, true, &mut messages),
                Body::None => {}
            }
            match &route.response_body {
                Some(field) => walk_field(field, false, &mut messages),
                None if !route.empty_response() => walk(&route.output(), false, &mut messages),
                None => {}
            }
        }
        // Short names where they are unique, full names where two packages share one.
        let mut count: HashMap<&str, usize> = HashMap::new();
        for (desc, _) in messages.values() {
            *count.entry(desc.name()).or_default() += 1;
        }
        let names = messages
            .iter()
            .map(|(full, (desc, _))| {
                let name = if count.get(desc.name()) == Some(&1) {
                    desc.name().to_owned()
                } else {
                    full.clone()
                };
                (full.clone(), name)
            })
            .collect();
        Self { messages, names }
    }

    fn components(&self) -> Map<String, Value> {
        self.messages
            .iter()
            .map(|(full, (desc, usage))| {
                // An answer always carries every field (null when unset), so what it does not mark
                // nullable is required; a request may leave anything out.
                let required = usage.output && !usage.input;
                (
                    self.names[full].clone(),
                    self.message_schema(desc, required, &[]),
                )
            })
            .collect()
    }

    fn reference(&self, desc: &MessageDescriptor) -> Value {
        let name = self
            .names
            .get(desc.full_name())
            .map_or(desc.full_name(), String::as_str);
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    fn message_schema(&self, desc: &MessageDescriptor, required: bool, skip: &[&str]) -> Value {
        let fields: Vec<FieldDescriptor> = desc
            .fields()
            .filter(|f| !skip.contains(&f.name()))
            .collect();
        let properties: Map<String, Value> = fields
            .iter()
            .map(|f| (f.name().to_owned(), self.field_schema(f)))
            .collect();
        let mut schema = json!({ "type": "object", "properties": properties });
        if required {
            let names: Vec<&str> = fields
                .iter()
                .filter(|f| !nullable(f))
                .map(FieldDescriptor::name)
                .collect();
            if !names.is_empty() {
                schema["required"] = json!(names);
            }
        }
        if let Some(description) = comment(&desc.parent_file(), desc.path()) {
            schema["description"] = Value::String(description);
        }
        schema
    }

    fn field_schema(&self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            let value = match field.kind() {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other,
            };
            json!({ "type": "object", "additionalProperties": self.kind_schema(&value, false) })
        } else if field.is_list() {
            json!({ "type": "array", "items": self.kind_schema(&field.kind(), false) })
        } else {
            self.kind_schema(&field.kind(), nullable(field))
        };
        if let Some(description) = comment(&field.parent_file(), field.path()) {
            schema["description"] = Value::String(description);
        }
        schema
    }

    fn kind_schema(&self, kind: &Kind, nullable: bool) -> Value {
        let (ty, format) = match kind {
            Kind::Double => ("number", Some("double")),
            Kind::Float => ("number", Some("float")),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => ("integer", Some("int32")),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => ("integer", Some("int64")),
            Kind::Uint32 | Kind::Fixed32 => ("integer", Some("uint32")),
            Kind::Uint64 | Kind::Fixed64 => ("integer", Some("uint64")),
            Kind::Bool => ("boolean", None),
            Kind::String => ("string", None),
            Kind::Bytes => ("string", Some("byte")),
            Kind::Enum(e) => {
                let mut values: Vec<Value> = e.values().map(|v| json!(v.name())).collect();
                if nullable {
                    values.push(Value::Null);
                }
                return json!({ "type": type_of("string", nullable), "enum": values });
            }
            Kind::Message(m) => {
                if let Some(schema) = well_known(m) {
                    return schema;
                }
                let reference = self.reference(m);
                return if nullable {
                    json!({ "oneOf": [reference, { "type": "null" }] })
                } else {
                    reference
                };
            }
        };
        let mut schema = json!({ "type": type_of(ty, nullable) });
        if let Some(format) = format {
            schema["format"] = json!(format);
        }
        if matches!(
            kind,
            Kind::Uint32 | Kind::Fixed32 | Kind::Uint64 | Kind::Fixed64
        ) {
            schema["minimum"] = json!(0);
        }
        schema
    }

    fn operation(&self, route: &Route, binding: usize) -> Value {
        let method = &route.method;
        let service = method.parent_service();
        let mut operation_id = format!("{}_{}", service.name(), method.name());
        if binding > 0 {
            operation_id = format!("{operation_id}_{binding}");
        }
        let description = comment(&method.parent_file(), method.path());
        let summary = description
            .as_deref()
            .map_or_else(|| method.name().to_owned(), first_sentence);
        let mut op = json!({
            "operationId": operation_id,
            "summary": summary,
            "tags": [service.name()],
            "x-grpc-method": route.grpc_path.as_str(),
        });
        if let Some(description) = description {
            op["description"] = Value::String(description);
        }

        let input = route.input();
        let mut parameters = Vec::new();
        for variable in route.template.variables() {
            if let Ok(field) = super::routes::resolve(&input, &variable.field_path) {
                let mut param = json!({
                    "name": variable.field(),
                    "in": "path",
                    "required": true,
                    "schema": self.kind_schema(&field.kind(), false),
                });
                if let Some(description) = comment(&field.parent_file(), field.path()) {
                    param["description"] = Value::String(description);
                }
                parameters.push(param);
            }
        }
        let idempotent = method
            .parent_pool()
            .get_extension_by_name(streambank_proto::IDEMPOTENCY_KEY)
            .is_some_and(|option| {
                let options = method.options();
                options.has_extension(&option)
                    && matches!(
                        *options.get_extension(&option),
                        prost_reflect::Value::Bool(true)
                    )
            });
        if idempotent {
            parameters.push(json!({
                "name": "Idempotency-Key",
                "in": "header",
                "required": false,
                "description": "Makes retries safe: a retry with the same key and the same body returns the \
                                first result and changes nothing more; a different body with the same key is \
                                422 IDEMPOTENCY_KEY_REUSED. Keys are kept at least 24 hours; visible ASCII.",
                "schema": { "type": "string" },
            }));
        }
        if route.body != Body::Whole {
            let mut seen = BTreeSet::new();
            for field in input.fields().filter(|f| !route.binds(f)) {
                self.query_parameters(&field, String::new(), 0, &mut seen, &mut parameters);
            }
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }

        let body_schema = match &route.body {
            Body::None => None,
            Body::Field(field) => Some(self.field_schema(field)),
            Body::Whole => {
                let bound = path_bound(route);
                Some(if bound.is_empty() {
                    self.reference(&input)
                } else {
                    self.message_schema(&input, false, &bound)
                })
            }
        };
        if let Some(schema) = body_schema {
            op["requestBody"] = json!({
                "required": true,
                "content": { "application/json": { "schema": schema } },
            });
        }

        let mut responses = Map::new();
        let success = if route.empty_response() {
            json!({ "description": "Done; no content." })
        } else {
            let schema = match &route.response_body {
                Some(field) => self.field_schema(field),
                None => self.reference(&route.output()),
            };
            json!({
                "description": "Success.",
                "content": { "application/json": { "schema": schema } },
            })
        };
        responses.insert(route.success.as_u16().to_string(), success);
        responses.insert(
            "default".into(),
            json!({
                "description": "An error, in the contract's shape (the status follows the standard gRPC-to-HTTP mapping).",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
            }),
        );
        op["responses"] = Value::Object(responses);
        op
    }

    /// A query parameter per scalar (or repeated scalar) field, following singular messages as `a.b`.
    fn query_parameters(
        &self,
        field: &FieldDescriptor,
        prefix: String,
        depth: usize,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<Value>,
    ) {
        let name = format!("{prefix}{}", field.name());
        if field.is_map() || !seen.insert(name.clone()) {
            return;
        }
        if let Kind::Message(m) = field.kind()
            && is_plain_message(&field.kind())
        {
            if !field.is_list() && depth < MAX_QUERY_DEPTH {
                for inner in m.fields() {
                    self.query_parameters(&inner, format!("{name}."), depth + 1, seen, out);
                }
            }
            return;
        }
        // A query parameter is absent or has a value: never `null`.
        let schema = if field.is_list() {
            json!({ "type": "array", "items": self.kind_schema(&field.kind(), false) })
        } else {
            self.kind_schema(&field.kind(), false)
        };
        let mut param = json!({ "name": name, "in": "query", "required": false, "schema": schema });
        if field.is_list() {
            param["explode"] = json!(true);
        }
        if let Some(description) = comment(&field.parent_file(), field.path()) {
            param["description"] = Value::String(description);
        }
        out.push(param);
    }
}

/// The top-level request fields the path binds (`{id}`), which a `body: "*"` body does not carry.
fn path_bound(route: &Route) -> Vec<&str> {
    route
        .template
        .variables()
        .iter()
        .filter(|v| v.field_path.len() == 1)
        .map(|v| v.field_path[0].as_str())
        .collect()
}

/// Adds `desc` and every message it reaches to `messages`.
fn walk(
    desc: &MessageDescriptor,
    input: bool,
    messages: &mut BTreeMap<String, (MessageDescriptor, Usage)>,
) {
    if well_known(desc).is_some() {
        return;
    }
    let entry = messages
        .entry(desc.full_name().to_owned())
        .or_insert_with(|| (desc.clone(), Usage::default()));
    let already = if input { entry.1.input } else { entry.1.output };
    if input {
        entry.1.input = true;
    } else {
        entry.1.output = true;
    }
    if already {
        return;
    }
    for field in desc.fields() {
        walk_field(&field, input, messages);
    }
}

fn walk_field(
    field: &FieldDescriptor,
    input: bool,
    messages: &mut BTreeMap<String, (MessageDescriptor, Usage)>,
) {
    let kind = if field.is_map() {
        match field.kind() {
            Kind::Message(entry) => entry.map_entry_value_field().kind(),
            other => other,
        }
    } else {
        field.kind()
    };
    if let Kind::Message(m) = kind {
        walk(&m, input, messages);
    }
}

/// Whether the field may be `null` in an answer: a proto3 `optional` scalar.
fn nullable(field: &FieldDescriptor) -> bool {
    field.field_descriptor_proto().proto3_optional()
}

fn type_of(ty: &str, nullable: bool) -> Value {
    if nullable {
        json!([ty, "null"])
    } else {
        json!(ty)
    }
}

/// The JSON forms of the well-known types (proto3 JSON mapping).
fn well_known(desc: &MessageDescriptor) -> Option<Value> {
    let wrapper = |ty: &str, format: Option<&str>| {
        let mut schema = json!({ "type": [ty, "null"] });
        if let Some(format) = format {
            schema["format"] = json!(format);
        }
        schema
    };
    Some(match desc.full_name() {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => {
            json!({ "type": "string", "description": "Seconds with an `s` suffix: `1.5s`." })
        }
        "google.protobuf.FieldMask" => json!({ "type": "string" }),
        "google.protobuf.Empty" | "google.protobuf.Struct" | "google.protobuf.Any" => {
            json!({ "type": "object" })
        }
        "google.protobuf.ListValue" => json!({ "type": "array" }),
        "google.protobuf.Value" => json!({}),
        "google.protobuf.DoubleValue" => wrapper("number", Some("double")),
        "google.protobuf.FloatValue" => wrapper("number", Some("float")),
        "google.protobuf.Int64Value" => wrapper("integer", Some("int64")),
        "google.protobuf.UInt64Value" => wrapper("integer", Some("uint64")),
        "google.protobuf.Int32Value" => wrapper("integer", Some("int32")),
        "google.protobuf.UInt32Value" => wrapper("integer", Some("uint32")),
        "google.protobuf.BoolValue" => wrapper("boolean", None),
        "google.protobuf.StringValue" => wrapper("string", None),
        "google.protobuf.BytesValue" => wrapper("string", Some("byte")),
        _ if is_empty_message(desc) => json!({ "type": "object" }),
        _ => return None,
    })
}

/// The proto comment attached to the element at `path` of `file`: its leading comment, else its
/// trailing one; lines of a paragraph joined, paragraphs kept apart.
fn comment(file: &FileDescriptor, path: &[i32]) -> Option<String> {
    let info = file.file_descriptor_proto().source_code_info.as_ref()?;
    let location = info.location.iter().find(|l| l.path == path)?;
    let raw = location
        .leading_comments
        .as_deref()
        .or(location.trailing_comments.as_deref())?;
    let mut paragraphs: Vec<String> = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in raw.lines().map(str::trim) {
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(current.join(" "));
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    if !current.is_empty() {
        paragraphs.push(current.join(" "));
    }
    let text = paragraphs.join("\n\n");
    (!text.is_empty()).then_some(text)
}

/// The first sentence of a comment (Swagger UI shows it beside the path).
fn first_sentence(text: &str) -> String {
    let paragraph = text.split("\n\n").next().unwrap_or(text);
    match paragraph.find(". ") {
        Some(i) => paragraph[..=i].to_owned(),
        None => paragraph.to_owned(),
    }
}

fn error_body_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": { "error": { "$ref": "#/components/schemas/ErrorDetail" } },
        "description": "Every error, from the gateway as from REST.",
    })
}

fn error_detail_schema() -> Value {
    json!({
        "type": "object",
        "required": ["code", "reason", "message", "details"],
        "properties": {
            "code": { "type": "string", "description": "The gRPC status code in snake_case (`invalid_argument`, `not_found`, ...)." },
            "reason": { "type": "string", "description": "A stable machine-readable reason (`INSUFFICIENT_FUNDS`, `TOKEN_EXPIRED`, ...)." },
            "message": { "type": "string" },
            "details": {
                "type": "object",
                "description": "`field_violations` for invalid requests; otherwise empty.",
                "properties": {
                    "field_violations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["field", "description"],
                            "properties": {
                                "field": { "type": "string" },
                                "description": { "type": "string" },
                            },
                        },
                    },
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_deterministic() {
        let pool = streambank_proto::descriptor_pool();
        let routes = RouteTable::from_pool(&pool).expect("routes");
        let public = ["/streambank.v1.UserService/CreateUser"];
        let first = document(&pool, &routes, &public);
        assert_eq!(first, document(&pool, &routes, &public));
        assert!(first["paths"]["/v1/users"]["post"]["security"].is_null());
        assert_eq!(
            first["paths"]["/v1/users/me"]["get"]["security"],
            json!([{"bearer": []}])
        );
    }
}
