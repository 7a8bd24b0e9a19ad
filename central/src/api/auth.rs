//! Health, login, logout and "who am I". A wrong password and an unknown user get the same
//! 401 body and take the same time (a dummy hash is verified); failures are throttled per
//! tenant+username and per client address.

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, JsonBody};
use crate::secrets::{dummy_hash, new_token, verify_password};
use axum::Json;
use axum::extract::{ConnectInfo, State};
use chrono::{DateTime, Utc};
use easyisp_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Instant;

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginBody {
    tenant: Option<String>,
    username: Option<String>,
    #[serde(default, deserialize_with = "option_secret::deserialize")]
    #[schemars(with = "Option<String>")]
    password: Option<Secret<String>>,
}

mod option_secret {
    use easyisp_protocol::Secret;
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(
        de: D,
    ) -> Result<Option<Secret<String>>, D::Error> {
        Option::<String>::deserialize(de).map(|o| o.map(Secret::new))
    }
}

#[derive(schemars::JsonSchema, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    token: String,
    expires_at: DateTime<Utc>,
}

pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<LoginResponse>, ApiError> {
    let tenant_ref = body
        .tenant
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ApiError::field("tenant", "tenant is required"))?;
    let username = body
        .username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ApiError::field("username", "username is required"))?;
    let password = body
        .password
        .ok_or_else(|| ApiError::field("password", "password is required"))?;
    if tenant_ref.len() > 200 || username.len() > 200 || password.expose().len() > 1024 {
        return Err(ApiError::BadCredentials);
    }
    let now = Instant::now();
    let user_key = format!(
        "{}\u{0}{}",
        tenant_ref.trim().to_ascii_lowercase(),
        username.to_ascii_lowercase()
    );
    let address_key = peer.ip().to_string();
    let waits = [
        state.user_throttle.blocked(&user_key, now),
        state.address_throttle.blocked(&address_key, now),
    ];
    if let Some(retry_after_secs) = waits.into_iter().flatten().max() {
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let tenant = state.storage.find_tenant(tenant_ref).await?;
    let credentials = match tenant {
        Some(tenant) => {
            state
                .storage
                .operator_credentials(tenant, username.clone())
                .await?
        }
        None => None,
    };
    let (hash, known) = match &credentials {
        Some((_, hash)) => (hash.clone(), true),
        None => (dummy_hash().to_string(), false),
    };
    let plain = password.into_inner();
    let verified = tokio::task::spawn_blocking(move || verify_password(&plain, &hash))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let (Some(tenant), Some((operator, _)), true, true) = (tenant, credentials, known, verified)
    else {
        state.user_throttle.fail(&user_key, now);
        state.address_throttle.fail(&address_key, now);
        tracing::info!(client = %peer.ip(), "failed login");
        return Err(ApiError::BadCredentials);
    };
    state.user_throttle.clear(&user_key);
    let (token, hash) = new_token().map_err(|e| ApiError::Internal(e.to_string()))?;
    let ttl =
        chrono::Duration::from_std(state.config.token_ttl).unwrap_or(chrono::Duration::hours(12));
    let expires_at = Utc::now() + ttl;
    state
        .storage
        .create_token(tenant, operator, hash, expires_at)
        .await?;
    tracing::info!(%tenant, operator = %operator, "operator logged in");
    Ok(Json(LoginResponse {
        token: token.into_inner(),
        expires_at,
    }))
}

pub async fn logout(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    state
        .storage
        .revoke_token(auth.tenant(), auth.token_hash.clone())
        .await?;
    state.tokens.remove(&auth.token_hash);
    Ok(Json(serde_json::json!({ "success": true })))
}

pub async fn me(auth: Auth) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "id": auth.operator.id,
        "tenantId": auth.operator.tenant_id,
        "username": auth.operator.username,
        "role": auth.operator.role,
        "permissions": auth.operator.role.permissions(),
    }))
}
