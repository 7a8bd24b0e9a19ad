//! Request extractors whose failures are `ApiError`s: JSON bodies (413 over 1 MiB, 400 with
//! serde's explanation for malformed JSON), query strings, path ids, and the bearer token.

use super::AppState;
use super::error::ApiError;
use crate::permissions::Permission;
use crate::secrets::token_hash;
use crate::storage::AuthedOperator;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use easyisp_protocol::ledger::{Actor, ActorKind};
use serde::Deserializer;
use serde::de::DeserializeOwned;
use uuid::Uuid;

/// A JSON body; the content type is not required (curl users forget it).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest(rejection.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::InvalidJson(
                "the body is empty; send a JSON object".into(),
            ));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::InvalidJson(e.to_string()))
    }
}

/// A query string parsed into `T`.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| QueryParams(q.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
    }
}

/// A path id: anything that is not a UUID names nothing, so it is a 404.
pub fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::NotFound)
}

/// The authenticated operator of a request.
pub struct Auth {
    pub operator: AuthedOperator,
    pub token_hash: Vec<u8>,
}

impl Auth {
    pub fn tenant(&self) -> Uuid {
        self.operator.tenant_id
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.operator.role.allows(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(permission.as_str()))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            kind: ActorKind::Operator,
            id: Some(self.operator.id),
            name: self.operator.username.clone(),
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        let hash = token_hash(token);
        let operator = match state.tokens.get(&hash) {
            Some(operator) => operator,
            None => {
                let operator = state
                    .storage
                    .authenticate(hash.clone(), chrono::Utc::now())
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                state.tokens.put(hash.clone(), operator.clone());
                operator
            }
        };
        tracing::Span::current().record("tenant", tracing::field::display(operator.tenant_id));
        tracing::Span::current().record("operator", tracing::field::display(&operator.username));
        Ok(Auth {
            operator,
            token_hash: hash,
        })
    }
}

/// For `#[serde(default, deserialize_with = "nullable")]`: tells "absent" (None) from
/// "null" (Some(None)) in partial updates.
pub fn nullable<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(de).map(Some)
}
