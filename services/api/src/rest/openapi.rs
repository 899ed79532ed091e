//! The OpenAPI 3.1 document, generated from the handlers' annotations, at `/openapi.json`, and Swagger UI
//! (vendored assets, nothing fetched at build or run time) at `/swagger-ui/`. The committed copy in
//! `docs/openapi/rest.json` is compared with this one by a test, so the two cannot drift.

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::{accounts, dto, error, notifications, sessions, transfers, users};
use crate::contract::constraints;
use crate::state::AppState;

#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "StreamBank REST API", version = "1.0.0",
         description = "Users, sessions, accounts, deposits and transfers. Errors have the shape \
                        {\"error\": {\"code\", \"reason\", \"message\", \"details\"}}."),
    paths(
        users::register, users::me, users::verify_email,
        sessions::login, sessions::refresh, sessions::logout,
        accounts::open, accounts::list, accounts::get_one, accounts::entries, accounts::deposit,
        transfers::create, transfers::get_one, transfers::list,
        notifications::list,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail, dto::User, dto::Account, dto::Entry, dto::Transfer,
                       dto::TransferResult, dto::Deposit, dto::Notification, dto::Login, dto::Refreshed)),
    modifiers(&BearerAuth, &ResponseDescriptions),
    tags((name = "users"), (name = "sessions"), (name = "accounts"), (name = "transfers"), (name = "notifications"))
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("PASETO or JWT")
                    .build(),
            ),
        );
    }
}

/// What the annotations leave out and OpenAPI requires: a description on every response (where an
/// annotation gives none, the status's reason phrase, `Created`, `Not Found`, ...), and operation ids
/// unique across the document (the handler's name is unique only within its resource, so the tag
/// prefixes it: `accounts_list`).
#[derive(Debug)]
struct ResponseDescriptions;

impl Modify for ResponseDescriptions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                if let (Some(id), Some(tag)) = (
                    operation.operation_id.as_mut(),
                    operation.tags.as_ref().and_then(|t| t.first()),
                ) && !id.starts_with(&format!("{tag}_"))
                {
                    *id = format!("{tag}_{id}");
                }
                for (status, response) in &mut operation.responses.responses {
                    if let utoipa::openapi::RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Response")
                            .to_owned();
                    }
                }
            }
        }
    }
}

/// The routes limited per client address (`429`).
const RATE_LIMITED: [(&str, &str); 2] = [("post", "/v1/users"), ("post", "/v1/sessions")];

/// The document: the annotations' one, with the error statuses the shared layers answer with and the
/// constraints the server enforces ([`constraints`]), and the verification link's HTML page.
pub fn document() -> utoipa::openapi::OpenApi {
    let annotated = ApiDoc::openapi();
    let Ok(mut document) = serde_json::to_value(&annotated) else {
        return annotated;
    };
    constraints::state_error_statuses(&mut document, &RATE_LIMITED);
    constraints::state_constraints(&mut document);
    // A browser following the link in the email gets a page (JSON with `Accept: application/json`).
    if let Some(responses) = document
        .pointer_mut("/paths/~1v1~1users~1verify-email/get/responses")
        .and_then(serde_json::Value::as_object_mut)
    {
        for response in responses.values_mut() {
            if let Some(content) = response
                .get_mut("content")
                .and_then(serde_json::Value::as_object_mut)
            {
                content.insert(
                    "text/html".into(),
                    serde_json::json!({ "schema": { "type": "string" } }),
                );
            }
        }
    }
    serde_json::from_value(document).unwrap_or(annotated)
}

/// The document as committed in `docs/openapi/rest.json`.
pub fn document_json() -> String {
    document().to_pretty_json().unwrap_or_default() + "\n"
}

pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/swagger-ui").url("/openapi.json", document()))
}
