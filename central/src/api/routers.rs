//! Routers CRUD (`routers:view` / `routers:manage`), one-time enrollment tokens and the
//! revocation of a router's broker account.

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, JsonBody, nullable, parse_id};
use crate::permissions::Permission;
use crate::secrets::new_token;
use crate::storage::{EnrollToken, RouterInput, RouterPatch};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use easyisp_protocol::router::RouterView;
use easyisp_protocol::validate;
use serde::Deserialize;

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouterBody {
    name: Option<String>,
    ip_address: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    location: Option<Option<String>>,
}

fn check(body: &RouterBody) -> Result<(), ApiError> {
    if let Some(name) = &body.name {
        validate::required_text("name", name, validate::TEXT_MAX)?;
    }
    if let Some(ip) = &body.ip_address {
        validate::ipv4("ipAddress", ip.trim())?;
    }
    if let Some(Some(location)) = &body.location {
        validate::text("location", location, validate::TEXT_MAX)?;
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<RouterBody>,
) -> Result<(StatusCode, Json<RouterView>), ApiError> {
    auth.require(Permission::RoutersManage)?;
    check(&body)?;
    let input = RouterInput {
        name: body
            .name
            .ok_or_else(|| ApiError::field("name", "name is required"))?
            .trim()
            .to_string(),
        ip_address: body
            .ip_address
            .ok_or_else(|| ApiError::field("ipAddress", "ipAddress is required"))?
            .trim()
            .to_string(),
        location: body.location.flatten().filter(|l| !l.trim().is_empty()),
    };
    let view = state
        .storage
        .create_router(auth.tenant(), auth.actor(), input)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// A router as the API shows it: the view plus, once its agent has connected, `sync`
/// (`pendingChanges` not yet acknowledged by the agent, `agentVersion`, the latest
/// `telemetry`).
#[derive(schemars::JsonSchema, serde::Serialize)]
pub struct RouterWithSync {
    #[serde(flatten)]
    view: RouterView,
    #[serde(skip_serializing_if = "Option::is_none")]
    sync: Option<serde_json::Value>,
}

fn with_sync(
    view: RouterView,
    sync: &std::collections::HashMap<uuid::Uuid, crate::storage::sync::RouterSyncView>,
) -> RouterWithSync {
    let sync = sync.get(&view.id).map(|s| {
        serde_json::json!({
            "pendingChanges": s.pending_changes,
            "agentVersion": s.agent_version,
            "telemetry": s.telemetry,
        })
    });
    RouterWithSync { view, sync }
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::RoutersView)?;
    let routers = state.storage.list_routers(auth.tenant()).await?;
    let sync = state.storage.router_sync_views(auth.tenant()).await?;
    let routers: Vec<RouterWithSync> = routers.into_iter().map(|r| with_sync(r, &sync)).collect();
    Ok(Json(
        serde_json::json!({ "total": routers.len(), "routers": routers }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<RouterWithSync>, ApiError> {
    auth.require(Permission::RoutersView)?;
    let view = state
        .storage
        .get_router(auth.tenant(), parse_id(&id)?)
        .await?;
    let sync = state.storage.router_sync_views(auth.tenant()).await?;
    Ok(Json(with_sync(view, &sync)))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RouterBody>,
) -> Result<Json<RouterView>, ApiError> {
    auth.require(Permission::RoutersManage)?;
    let id = parse_id(&id)?;
    check(&body)?;
    let patch = RouterPatch {
        name: body.name.map(|n| n.trim().to_string()),
        ip_address: body.ip_address.map(|n| n.trim().to_string()),
        location: body.location,
    };
    Ok(Json(
        state
            .storage
            .update_router(auth.tenant(), auth.actor(), id, patch)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::RoutersManage)?;
    let id = parse_id(&id)?;
    state
        .storage
        .delete_router(auth.tenant(), auth.actor(), id)
        .await?;
    // A deleted router's agent must not keep its broker account (the account files leave
    // deleted routers out even if this step fails; it only makes the broker drop it now).
    state.broker.revoke_agent(id).await?;
    Ok(Json(serde_json::json!({ "success": true })))
}

/// `{success, revoked}`: deletes the router's broker account and reloads the broker, which
/// drops the agent's connection; it cannot log in again until enrolled again. `revoked` is
/// false when the router had no account.
pub async fn revoke(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::RoutersManage)?;
    let id = parse_id(&id)?;
    let revoked = state
        .storage
        .revoke_agent_account(auth.tenant(), auth.actor(), id)
        .await?;
    state.broker.reload_accounts().await?;
    Ok(Json(
        serde_json::json!({ "success": true, "revoked": revoked }),
    ))
}

/// 201 `{token, expiresAt}`: a one-time token for `easyisp-agent enroll`; only its hash is
/// stored, and a newer token replaces an unused older one.
pub async fn enroll(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    auth.require(Permission::RoutersManage)?;
    let id = parse_id(&id)?;
    let (token, token_hash) = new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let ttl =
        chrono::Duration::from_std(state.config.enroll_ttl).unwrap_or(chrono::Duration::hours(1));
    let expires_at = Utc::now() + ttl;
    state
        .storage
        .create_enroll_token(
            auth.tenant(),
            auth.actor(),
            id,
            EnrollToken {
                token_hash,
                expires_at,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({ "token": token.expose(), "expiresAt": expires_at })),
    ))
}
