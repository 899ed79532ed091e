//! The route table: one [`Route`] per `google.api.http` binding (the rule and its
//! `additional_bindings`) of every method of every service in [`streambank_proto::SERVICES`], built once
//! at start from the descriptor pool.
//!
//! Nothing here names an endpoint: a new annotated rpc gets its route, its transcoding and its OpenAPI
//! entry by being in the descriptor set. A rule that cannot work (a template that does not parse, a
//! variable or body naming no field, two rules for the same method and path) stops the process at
//! start, never at the first request.
//!
//! Lookup follows axum's rules, so that REST and the gateway answer alike: the path picks the resource
//! (the most specific template that matches, a literal segment beating a variable), then the method
//! picks the rule; a known path with no rule for the method is `405`, an unknown path `404`.

use anyhow::{Context as _, bail};
use axum::http::uri::PathAndQuery;
use axum::http::{Method, StatusCode};
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};
use streambank_proto::google_api::HttpRule;
use streambank_proto::google_api::http_rule::Pattern;

use super::template::{Captures, PathTemplate, Specificity};

/// Where the request message comes from besides the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body: the remaining fields come from the query string.
    None,
    /// `body: "*"`: the JSON body is the message; there are no query parameters.
    Whole,
    /// `body: "field"`: the JSON body is that top-level field; the rest come from the query string.
    Field(FieldDescriptor),
}

/// One HTTP binding of one gRPC method.
#[derive(Debug, Clone)]
pub struct Route {
    pub http_method: Method,
    pub template: PathTemplate,
    pub body: Body,
    /// `response_body: "field"`: only that field of the response is the HTTP body.
    pub response_body: Option<FieldDescriptor>,
    pub method: MethodDescriptor,
    /// `/streambank.v1.AccountService/GetAccount`.
    pub grpc_path: PathAndQuery,
    /// `streambank.v1.http_success_status`, else 204 for `google.protobuf.Empty`, else 200.
    pub success: StatusCode,
    rank: Specificity,
}

impl Route {
    pub fn input(&self) -> MessageDescriptor {
        self.method.input()
    }

    pub fn output(&self) -> MessageDescriptor {
        self.method.output()
    }

    /// Whether the success answer has no body (`google.protobuf.Empty`, or a 204).
    pub fn empty_response(&self) -> bool {
        self.success == StatusCode::NO_CONTENT || is_empty_message(&self.output())
    }

    /// Whether a top-level field is bound by the path or the body (and so is no query parameter).
    pub fn binds(&self, field: &FieldDescriptor) -> bool {
        match &self.body {
            Body::Whole => return true,
            Body::Field(f) if f == field => return true,
            _ => {}
        }
        self.template
            .variables()
            .iter()
            .any(|v| v.field_path.len() == 1 && v.field_path[0] == field.name())
    }
}

/// What a request finds in the table.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// The route, with each path variable's dotted field path and decoded value.
    Found(&'a Route, Captures),
    /// The path is a resource, but not for this method; the `Allow` header's value lists the
    /// methods it is (RFC 9110 §15.5.6).
    MethodNotAllowed(String),
    NotFound,
}

/// Every route, most specific template first.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
}

impl RouteTable {
    /// Reads the rules of every method of [`streambank_proto::SERVICES`].
    pub fn from_pool(pool: &DescriptorPool) -> anyhow::Result<Self> {
        Self::for_services(pool, streambank_proto::SERVICES)
    }

    pub fn for_services(pool: &DescriptorPool, services: &[&str]) -> anyhow::Result<Self> {
        let http = pool
            .get_extension_by_name("google.api.http")
            .context("google.api.http is not in the descriptor pool")?;
        let success_status = pool.get_extension_by_name(streambank_proto::HTTP_SUCCESS_STATUS);
        let mut routes = Vec::new();
        for name in services {
            let service = pool
                .get_service_by_name(name)
                .with_context(|| format!("service {name} is not in the descriptor pool"))?;
            for method in service.methods() {
                let options = method.options();
                if !options.has_extension(&http) {
                    continue;
                }
                let Value::Message(rule) = options.get_extension(&http).into_owned() else {
                    bail!("{}: google.api.http is not a message", method.full_name());
                };
                let rule: HttpRule = rule
                    .transcode_to()
                    .with_context(|| format!("{}: google.api.http", method.full_name()))?;
                let success = success_for(&method, &options, success_status.as_ref())?;
                let mut rules = vec![rule.clone()];
                rules.extend(rule.additional_bindings.iter().cloned());
                for rule in rules {
                    let route = route(&method, &rule, success)
                        .with_context(|| format!("the HTTP rule of {}", method.full_name()))?;
                    routes.push(route);
                }
            }
        }
        Self::new(routes)
    }

    fn new(mut routes: Vec<Route>) -> anyhow::Result<Self> {
        routes.sort_by(|a, b| {
            a.template
                .cmp(&b.template)
                .then_with(|| a.http_method.as_str().cmp(b.http_method.as_str()))
        });
        for (i, a) in routes.iter().enumerate() {
            let twin = routes[i + 1..]
                .iter()
                .take_while(|b| b.rank == a.rank)
                .find(|b| {
                    b.http_method == a.http_method
                        && b.template.openapi_path() == a.template.openapi_path()
                });
            if let Some(b) = twin {
                bail!(
                    "{} {} is bound twice: by {} and by {}",
                    a.http_method,
                    a.template.as_str(),
                    a.method.full_name(),
                    b.method.full_name()
                );
            }
        }
        Ok(Self { routes })
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route for a request. `HEAD` is served by the `GET` rule, as axum does.
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        // Routes are sorted most specific first. The first template that matches picks the resource;
        // rules with an equally specific template that also matches are the same resource.
        let mut resource: Option<&Specificity> = None;
        let mut allowed: Vec<&str> = Vec::new();
        for route in &self.routes {
            if resource.is_some_and(|rank| *rank != route.rank) {
                break;
            }
            if let Some(captures) = route.template.matches(path) {
                if route.http_method == *wanted {
                    return Lookup::Found(route, captures);
                }
                resource = Some(&route.rank);
                allowed.push(route.http_method.as_str());
                if route.http_method == Method::GET {
                    allowed.push(Method::HEAD.as_str());
                }
            }
        }
        if resource.is_some() {
            allowed.sort_unstable();
            allowed.dedup();
            Lookup::MethodNotAllowed(allowed.join(", "))
        } else {
            Lookup::NotFound
        }
    }

    /// The HTTP methods that some rule uses (for CORS).
    pub fn methods(&self) -> Vec<Method> {
        let mut methods: Vec<Method> = Vec::new();
        for route in &self.routes {
            if !methods.contains(&route.http_method) {
                methods.push(route.http_method.clone());
            }
        }
        methods
    }
}

/// One binding: `rule` for `method`, answering `success`.
pub fn route(
    method: &MethodDescriptor,
    rule: &HttpRule,
    success: StatusCode,
) -> anyhow::Result<Route> {
    if method.is_client_streaming() || method.is_server_streaming() {
        bail!("a streaming method cannot be transcoded to one HTTP request and answer");
    }
    let (http_method, template) = match &rule.pattern {
        Some(Pattern::Get(t)) => (Method::GET, t.as_str()),
        Some(Pattern::Put(t)) => (Method::PUT, t.as_str()),
        Some(Pattern::Post(t)) => (Method::POST, t.as_str()),
        Some(Pattern::Delete(t)) => (Method::DELETE, t.as_str()),
        Some(Pattern::Patch(t)) => (Method::PATCH, t.as_str()),
        Some(Pattern::Custom(custom)) => (
            Method::from_bytes(custom.kind.as_bytes())
                .with_context(|| format!("`{}` is not an HTTP method", custom.kind))?,
            custom.path.as_str(),
        ),
        None => bail!("the rule has no method and path"),
    };
    let template = PathTemplate::parse(template)?;
    let input = method.input();
    for variable in template.variables() {
        let field = resolve(&input, &variable.field_path)
            .with_context(|| format!("path variable {{{}}}", variable.field()))?;
        if field.is_list() || field.is_map() || is_plain_message(&field.kind()) {
            bail!(
                "path variable {{{}}} must name a singular scalar field",
                variable.field()
            );
        }
    }
    let body = match rule.body.as_str() {
        "" => Body::None,
        "*" => Body::Whole,
        name => Body::Field(
            input
                .get_field_by_name(name)
                .with_context(|| format!("body field `{name}` is not in {}", input.full_name()))?,
        ),
    };
    let output = method.output();
    let response_body =
        match rule.response_body.as_str() {
            "" => None,
            name => Some(output.get_field_by_name(name).with_context(|| {
                format!("response_body `{name}` is not in {}", output.full_name())
            })?),
        };
    let grpc_path = format!("/{}/{}", method.parent_service().full_name(), method.name());
    Ok(Route {
        http_method,
        body,
        response_body,
        method: method.clone(),
        grpc_path: PathAndQuery::try_from(grpc_path)?,
        success,
        rank: template.specificity(),
        template,
    })
}

fn success_for(
    method: &MethodDescriptor,
    options: &DynamicMessage,
    extension: Option<&prost_reflect::ExtensionDescriptor>,
) -> anyhow::Result<StatusCode> {
    let configured = extension
        .filter(|ext| options.has_extension(ext))
        .map(|ext| options.get_extension(ext).as_i32());
    match configured {
        Some(Some(code)) => {
            let status = u16::try_from(code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(StatusCode::is_success)
                .with_context(|| {
                    format!(
                        "{}: {} = {code} is not a 2xx HTTP status",
                        method.full_name(),
                        streambank_proto::HTTP_SUCCESS_STATUS
                    )
                })?;
            Ok(status)
        }
        Some(None) => bail!(
            "{}: {} is not an int32",
            method.full_name(),
            streambank_proto::HTTP_SUCCESS_STATUS
        ),
        None if is_empty_message(&method.output()) => Ok(StatusCode::NO_CONTENT),
        None => Ok(StatusCode::OK),
    }
}

/// The field a dotted path names, through singular message fields.
pub fn resolve(message: &MessageDescriptor, path: &[String]) -> anyhow::Result<FieldDescriptor> {
    let mut current = message.clone();
    let mut field = None;
    for (i, name) in path.iter().enumerate() {
        let f = current
            .get_field_by_name(name)
            .with_context(|| format!("`{name}` is not a field of {}", current.full_name()))?;
        if i + 1 < path.len() {
            match f.kind() {
                Kind::Message(m) if !f.is_list() && !f.is_map() => current = m,
                _ => bail!("`{name}` is not a singular message field"),
            }
        }
        field = Some(f);
    }
    field.context("an empty field path")
}

pub fn is_empty_message(message: &MessageDescriptor) -> bool {
    message.full_name() == "google.protobuf.Empty"
}

/// A message kind that is not one of the well-known types with a scalar JSON form.
pub fn is_plain_message(kind: &Kind) -> bool {
    match kind {
        Kind::Message(m) => !matches!(
            m.full_name(),
            "google.protobuf.Timestamp"
                | "google.protobuf.Duration"
                | "google.protobuf.FieldMask"
                | "google.protobuf.DoubleValue"
                | "google.protobuf.FloatValue"
                | "google.protobuf.Int64Value"
                | "google.protobuf.UInt64Value"
                | "google.protobuf.Int32Value"
                | "google.protobuf.UInt32Value"
                | "google.protobuf.BoolValue"
                | "google.protobuf.StringValue"
                | "google.protobuf.BytesValue"
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable::from_pool(&streambank_proto::descriptor_pool()).expect("the route table builds")
    }

    #[test]
    fn every_method_of_every_service_has_a_route() {
        let pool = streambank_proto::descriptor_pool();
        let table = table();
        for name in streambank_proto::SERVICES {
            let service = pool.get_service_by_name(name).expect("service");
            for method in service.methods() {
                assert!(
                    table
                        .routes()
                        .iter()
                        .any(|r| r.method.full_name() == method.full_name()),
                    "{} has no route",
                    method.full_name()
                );
            }
        }
        assert_eq!(table.routes().len(), 15);
    }

    #[test]
    fn routes_follow_the_rules() {
        let table = table();
        let Lookup::Found(route, captures) = table.lookup(&Method::POST, "/v1/accounts/7/deposits")
        else {
            panic!("POST /v1/accounts/7/deposits is routed");
        };
        assert_eq!(
            route.grpc_path.as_str(),
            "/streambank.v1.AccountService/Deposit"
        );
        assert_eq!(route.body, Body::Whole);
        assert_eq!(route.success, StatusCode::CREATED);
        assert_eq!(captures, [("id".to_owned(), Ok("7".to_owned()))]);

        let Lookup::Found(logout, _) = table.lookup(&Method::DELETE, "/v1/sessions/current") else {
            panic!("DELETE /v1/sessions/current is routed");
        };
        assert_eq!(logout.success, StatusCode::NO_CONTENT);
        assert!(logout.empty_response());

        let Lookup::Found(list, _) = table.lookup(&Method::GET, "/v1/accounts") else {
            panic!("GET /v1/accounts is routed");
        };
        assert_eq!(list.success, StatusCode::OK);
        assert_eq!(list.body, Body::None);
        assert!(matches!(
            table.lookup(&Method::HEAD, "/v1/accounts"),
            Lookup::Found(..)
        ));

        assert!(matches!(
            table.lookup(&Method::PUT, "/v1/accounts"),
            Lookup::MethodNotAllowed(allow) if allow == "GET, HEAD, POST"
        ));
        assert!(matches!(
            table.lookup(&Method::GET, "/v1/nothing"),
            Lookup::NotFound
        ));
        assert!(matches!(
            table.lookup(&Method::GET, "/v1/accounts/"),
            Lookup::NotFound
        ));
    }

    #[test]
    fn a_literal_route_beats_a_template_whatever_the_declaration_order() {
        let pool = streambank_proto::descriptor_pool();
        let account = pool
            .get_service_by_name("streambank.v1.AccountService")
            .expect("service");
        let users = pool
            .get_service_by_name("streambank.v1.UserService")
            .expect("service");
        let get_account = account
            .methods()
            .find(|m| m.name() == "GetAccount")
            .expect("GetAccount");
        let get_me = users
            .methods()
            .find(|m| m.name() == "GetMe")
            .expect("GetMe");
        let rule = |path: &str| HttpRule {
            pattern: Some(Pattern::Get(path.to_owned())),
            ..HttpRule::default()
        };
        // The template is declared first; the literal must still win.
        let table = RouteTable::new(vec![
            route(&get_account, &rule("/v1/users/{id}"), StatusCode::OK).expect("route"),
            route(&get_me, &rule("/v1/users/me"), StatusCode::OK).expect("route"),
        ])
        .expect("table");
        let Lookup::Found(me, captures) = table.lookup(&Method::GET, "/v1/users/me") else {
            panic!("routed");
        };
        assert_eq!(me.method, get_me);
        assert!(captures.is_empty());
        let Lookup::Found(other, captures) = table.lookup(&Method::GET, "/v1/users/12") else {
            panic!("routed");
        };
        assert_eq!(other.method, get_account);
        assert_eq!(captures, [("id".to_owned(), Ok("12".to_owned()))]);
        // The literal path decides the resource: POST /v1/users/me is 405, not the template's.
        assert!(matches!(
            table.lookup(&Method::POST, "/v1/users/me"),
            Lookup::MethodNotAllowed(allow) if allow == "GET, HEAD"
        ));
    }

    #[test]
    fn bad_rules_fail_at_start() {
        let pool = streambank_proto::descriptor_pool();
        let get_account = pool
            .get_service_by_name("streambank.v1.AccountService")
            .and_then(|s| s.methods().find(|m| m.name() == "GetAccount"))
            .expect("GetAccount");
        for (rule, body) in [
            ("/v1/accounts/{nope}", ""),
            ("/v1/accounts/{id", ""),
            ("/v1/accounts", "nope"),
        ] {
            let rule = HttpRule {
                pattern: Some(Pattern::Get(rule.to_owned())),
                body: body.to_owned(),
                ..HttpRule::default()
            };
            assert!(
                route(&get_account, &rule, StatusCode::OK).is_err(),
                "{rule:?}"
            );
        }
        let twice = HttpRule {
            pattern: Some(Pattern::Get("/v1/accounts/{id}".to_owned())),
            ..HttpRule::default()
        };
        let r = route(&get_account, &twice, StatusCode::OK).expect("route");
        assert!(RouteTable::new(vec![r.clone(), r]).is_err());
    }
}
