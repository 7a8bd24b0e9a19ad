//! Operators CRUD (`operators:manage`): argon2id password hashes, built-in roles.

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, JsonBody, parse_id};
use crate::permissions::{Permission, Role};
use crate::secrets::hash_password;
use crate::storage::OperatorView;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use easyisp_protocol::{Secret, validate};
use serde::Deserialize;

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OperatorBody {
    username: Option<String>,
    password: Option<String>,
    role: Option<String>,
}

fn role(text: Option<&str>) -> Result<Option<Role>, ApiError> {
    text.map(|r| {
        r.parse::<Role>()
            .map_err(|m| ApiError::field("role", format!("role {m}")))
    })
    .transpose()
}

async fn hash(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || hash_password(&Secret::new(password)))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<OperatorBody>,
) -> Result<(StatusCode, Json<OperatorView>), ApiError> {
    auth.require(Permission::OperatorsManage)?;
    let username = body.username.unwrap_or_default();
    validate::username(&username)?;
    let password = body
        .password
        .ok_or_else(|| ApiError::field("password", "password is required"))?;
    validate::operator_password(&password, &username)?;
    let role =
        role(body.role.as_deref())?.ok_or_else(|| ApiError::field("role", "role is required"))?;
    let hashed = hash(password).await?;
    let view = state
        .storage
        .create_operator(auth.tenant(), auth.actor(), username, hashed, role)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::OperatorsManage)?;
    let operators = state.storage.list_operators(auth.tenant()).await?;
    Ok(Json(
        serde_json::json!({ "total": operators.len(), "operators": operators }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<OperatorView>, ApiError> {
    auth.require(Permission::OperatorsManage)?;
    Ok(Json(
        state
            .storage
            .get_operator(auth.tenant(), parse_id(&id)?)
            .await?,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<OperatorBody>,
) -> Result<Json<OperatorView>, ApiError> {
    auth.require(Permission::OperatorsManage)?;
    let id = parse_id(&id)?;
    if body.username.is_some() {
        return Err(ApiError::field(
            "username",
            "an operator's username cannot change; create a new operator",
        ));
    }
    let current = state.storage.get_operator(auth.tenant(), id).await?;
    let role = role(body.role.as_deref())?;
    let hashed = match body.password {
        Some(password) => {
            validate::operator_password(&password, &current.username)?;
            Some(hash(password).await?)
        }
        None => None,
    };
    let updated = state
        .storage
        .update_operator(auth.tenant(), auth.actor(), id, hashed, role)
        .await;
    // Roles and passwords are cached with tokens: forget them all (rare, and always safe).
    state.tokens.clear();
    Ok(Json(updated?))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::OperatorsManage)?;
    let id = parse_id(&id)?;
    if id == auth.operator.id {
        return Err(ApiError::Conflict {
            field: None,
            message: "operators cannot delete themselves".into(),
        });
    }
    let deleted = state
        .storage
        .delete_operator(auth.tenant(), auth.actor(), id)
        .await;
    state.tokens.clear();
    deleted?;
    Ok(Json(serde_json::json!({ "success": true })))
}
