//! Extractors that turn every decoding failure into the contract's error shape (axum's own rejections
//! answer in plain text), and the authenticated caller.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use streambank_service::Authenticated;

use super::error::ApiError;
use crate::contract::http::{describe_json_error, is_json};
use crate::state::AppState;

/// A JSON body decoded field by field: a wrong type names the field (`amount`), not a byte offset.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::malformed(
                "body",
                "send JSON with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge {
                    limit: state.body_limit_bytes,
                }
            } else {
                ApiError::malformed("body", "the body could not be read")
            }
        })?;
        decode_json(&bytes).map(ApiJson)
    }
}

/// A request body: a JSON object decoded into `T`. serde's derive would also read a struct from an
/// array of its fields in order (`[1, 2, 5, "USD"]`); the contract's bodies are objects, so anything
/// else is refused, in the words the gateway's decoder uses (`invalid type: sequence, expected a map`).
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
        && let Err(e) = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
    {
        return Err(ApiError::malformed("body", describe_json_error(&e)));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ApiError::malformed(&field, describe_json_error(e.inner()))
    })?;
    de.end()
        .map_err(|e| ApiError::malformed("body", describe_json_error(&e)))?;
    Ok(value)
}

/// Query parameters decoded with the same care.
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                ApiError::malformed(
                    if path == "." { "query" } else { &path },
                    e.inner().to_string(),
                )
            })
    }
}

/// The `{id}` of a path such as `/v1/accounts/{id}`: anything but a positive integer, including a
/// segment whose percent-encoding is not UTF-8 (axum's own rejection of that answers in plain text),
/// is a 400 in the contract's shape naming `id`; an empty segment is a 404, as for any unknown path.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let invalid = || ApiError::malformed("id", "must be a positive integer id");
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid())?;
        // axum's router lets `/v1/accounts//entries` through with an empty id; a path with an empty
        // segment names no resource (`/v1/accounts/` is a 404 too, and the gateway says the same).
        if raw.is_empty() {
            return Err(ApiError::RouteNotFound);
        }
        // Whether the number names an id (a positive one) is the service's rule.
        raw.parse::<i64>().map(PathId).map_err(|_| invalid())
    }
}

/// The authenticated caller, from `Authorization: Bearer <access token>`.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub Authenticated);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = streambank_auth::bearer_token(
            parts
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        )
        .ok_or(ApiError::MissingToken)?;
        Ok(AuthUser(state.sessions.authenticate(token).await?))
    }
}
