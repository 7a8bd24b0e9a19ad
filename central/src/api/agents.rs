//! `POST /api/agents/enroll`: an agent redeems its one-time enrollment token for its broker
//! account (docs/sync.md, "Enrollment"). No bearer token: the enrollment token is the
//! credential. Unknown, used and expired tokens get one answer (401 `enroll_token_invalid`)
//! and count as failures of the client address, throttled like logins. This is the one
//! response that carries a password: the agent's new broker password, made here and stored
//! only as a hash.

use super::AppState;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::secrets::token_hash;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use easyisp_protocol::Secret;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::Instant;
use uuid::Uuid;

/// Enrollment tokens are 64 hex characters; anything much longer is not one.
const TOKEN_MAX: usize = 256;

#[derive(schemars::JsonSchema, Deserialize)]
pub struct EnrollBody {
    #[serde(default, deserialize_with = "secret")]
    #[schemars(with = "Option<String>")]
    token: Option<Secret<String>>,
}

fn secret<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<Secret<String>>, D::Error> {
    Option::<String>::deserialize(de).map(|o| o.map(Secret::new))
}

#[derive(schemars::JsonSchema, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollResponse {
    router_id: Uuid,
    tenant_id: Uuid,
    router_name: String,
    mqtt: MqttAccount,
    ca_cert: Option<String>,
}

/// Serialised once, into the enroll answer; never logged (no `Debug`).
#[derive(schemars::JsonSchema, Serialize)]
pub struct MqttAccount {
    url: String,
    username: String,
    password: String,
}

pub async fn enroll(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<EnrollBody>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let now = Instant::now();
    // Shares the login throttle's per-address budget under its own key.
    let key = format!("enroll\u{0}{}", peer.ip());
    if let Some(retry_after_secs) = state.address_throttle.blocked(&key, now) {
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let token = body
        .token
        .filter(|t| !t.expose().trim().is_empty())
        .ok_or_else(|| ApiError::field("token", "token is required"))?;
    let redeemed = if token.expose().len() > TOKEN_MAX {
        None
    } else {
        state
            .broker
            .redeem(token_hash(token.expose().trim()))
            .await?
    };
    let Some((enrolled, password)) = redeemed else {
        state.address_throttle.fail(&key, now);
        tracing::info!(client = %peer.ip(), "refused an enrollment token");
        return Err(ApiError::EnrollTokenInvalid);
    };
    Ok(Json(EnrollResponse {
        router_id: enrolled.router_id,
        tenant_id: enrolled.tenant_id,
        router_name: enrolled.router_name,
        mqtt: MqttAccount {
            url: state.broker.agent_url().to_string(),
            username: enrolled.router_id.to_string(),
            password: password.into_inner(),
        },
        ca_cert: state.broker.ca_pem(),
    }))
}
