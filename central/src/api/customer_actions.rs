//! Customer actions and sub-resources: live status, disconnect, sessions, payments,
//! recharge, expiry, package, suspend, activate, audit, restore, anonymize.

use super::AppState;
use super::customers::paging;
use super::error::ApiError;
use super::extract::{Auth, JsonBody, QueryParams, nullable, parse_id};
use crate::permissions::Permission;
use crate::storage::{AuditPage, LiveStatus, PaymentsPage, Recharge, SessionsPage};
use crate::sync::CommandError;
use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::{CommandKind, CommandOutcome};
use easyisp_protocol::money::Money;
use easyisp_protocol::session::{SessionView, human_ago};
use easyisp_protocol::validate;
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;
use uuid::Uuid;

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PageQuery {
    /// Page number, from 1 (default 1).
    page: Option<String>,
    /// Rows per page, 1 to 100 (default 20).
    page_size: Option<String>,
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveStatusQuery {
    /// `true` asks the customer's router through its agent, and answers from the synced
    /// sessions if it has not answered within 3 s.
    fresh: Option<String>,
}

/// How long `disconnect` waits for the router's agent.
const DISCONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long `live-status?fresh=true` waits before answering from the synced sessions.
const LIVE_STATUS_WAIT: Duration = Duration::from_secs(3);

/// The synced session data; with `fresh=true`, the router's own answer when its agent gives
/// one within 3 s (same shape either way).
pub async fn live_status(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<LiveStatusQuery>,
) -> Result<Json<LiveStatus>, ApiError> {
    auth.require(Permission::CustomersView)?;
    let id = parse_id(&id)?;
    let fresh = match q.fresh.as_deref() {
        None | Some("false") | Some("0") => false,
        Some("true") | Some("1") | Some("") => true,
        Some(_) => return Err(ApiError::BadRequest("fresh must be true or false".into())),
    };
    let synced = state
        .storage
        .live_status(auth.tenant(), id, Utc::now())
        .await?;
    if !fresh {
        return Ok(Json(synced));
    }
    let router = state
        .storage
        .get_customer(auth.tenant(), id, Utc::now())
        .await?
        .nas_id;
    let (Some(router), Some(sync)) = (router, state.sync.as_ref()) else {
        return Ok(Json(synced));
    };
    let command = CommandKind::LiveStatus { customer_id: id };
    match sync.command(router, command, LIVE_STATUS_WAIT).await {
        Ok(CommandOutcome::LiveStatus(Some(session))) => {
            let now = Utc::now();
            Ok(Json(LiveStatus {
                is_online: session.is_active(),
                session: session.is_active().then(|| SessionView::at(&session, now)),
                last_seen: Some(human_ago(0)),
            }))
        }
        Ok(CommandOutcome::LiveStatus(None)) => Ok(Json(LiveStatus {
            is_online: false,
            session: None,
            last_seen: synced.last_seen,
        })),
        Ok(other) => {
            tracing::debug!(outcome = ?other, "live status fell back to synced sessions");
            Ok(Json(synced))
        }
        Err(e) => {
            tracing::debug!(error = %e, "live status fell back to synced sessions");
            Ok(Json(synced))
        }
    }
}

/// Drops the customer's active session at its router now: 200 `{success: true}` once the
/// agent confirms; 503 when the agent is offline or silent for 5 s; 409 without a router.
pub async fn disconnect(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersEdit)?;
    let id = parse_id(&id)?;
    let customer = state
        .storage
        .get_customer(auth.tenant(), id, Utc::now())
        .await?;
    let Some(router) = customer.nas_id else {
        return Err(ApiError::Conflict {
            field: Some("nasId".into()),
            message: "the customer has no router (nasId) to disconnect it from".into(),
        });
    };
    let Some(sync) = state.sync.as_ref() else {
        return Err(ApiError::AgentUnavailable {
            code: "sync_unavailable",
            message: "sync with the routers' agents is not running on this server".into(),
        });
    };
    let command = CommandKind::Disconnect { customer_id: id };
    match sync.command(router, command, DISCONNECT_WAIT).await {
        Ok(CommandOutcome::Done) => Ok(Json(json!({ "success": true }))),
        Ok(CommandOutcome::Failed(reason)) => Err(ApiError::AgentFailed {
            code: "router_command_failed",
            message: format!("the router could not disconnect the customer: {reason}"),
        }),
        Ok(CommandOutcome::LiveStatus(_)) => Err(ApiError::AgentFailed {
            code: "router_command_failed",
            message: "the router's agent answered with something else than a disconnect result"
                .into(),
        }),
        Err(CommandError::AgentOffline) => Err(ApiError::AgentUnavailable {
            code: "agent_offline",
            message: "the router's agent is offline; the customer cannot be disconnected now"
                .into(),
        }),
        Err(CommandError::Timeout(_)) => Err(ApiError::AgentUnavailable {
            code: "agent_timeout",
            message: "the router's agent did not confirm the disconnect within 5 seconds".into(),
        }),
        Err(CommandError::NotSent) => Err(ApiError::AgentUnavailable {
            code: "sync_unavailable",
            message: "central cannot reach its MQTT broker; try again shortly".into(),
        }),
    }
}

pub async fn sessions(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<SessionsPage>, ApiError> {
    auth.require(Permission::CustomersView)?;
    let (page, size) = paging(q.page.as_deref(), q.page_size.as_deref())?;
    Ok(Json(
        state
            .storage
            .sessions(auth.tenant(), parse_id(&id)?, page, size, Utc::now())
            .await?,
    ))
}

pub async fn payments(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<PaymentsPage>, ApiError> {
    auth.require(Permission::FinanceView)?;
    let (page, size) = paging(q.page.as_deref(), q.page_size.as_deref())?;
    Ok(Json(
        state
            .storage
            .payments(auth.tenant(), parse_id(&id)?, page, size)
            .await?,
    ))
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RechargeBody {
    amount: Option<Money>,
    description: Option<String>,
    method: Option<String>,
    transaction_id: Option<String>,
    idempotency_key: Option<String>,
}

pub async fn recharge(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RechargeBody>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::FinanceIncomeCreate)?;
    let id = parse_id(&id)?;
    let amount = body
        .amount
        .ok_or_else(|| ApiError::field("amount", "amount is required"))?
        .positive_amount()
        .map_err(|e| ApiError::field("amount", e.to_string()))?;
    for (field, value, max) in [
        ("description", &body.description, validate::TEXT_MAX),
        ("method", &body.method, 32),
        ("transactionId", &body.transaction_id, 100),
        ("idempotencyKey", &body.idempotency_key, 100),
    ] {
        if let Some(v) = value {
            validate::text(field, v, max)?;
        }
    }
    let recharge = Recharge {
        amount,
        method: body
            .method
            .map(|m| m.trim().to_ascii_uppercase())
            .filter(|m| !m.is_empty()),
        transaction_id: body.transaction_id,
        description: body.description,
        idempotency_key: body.idempotency_key.filter(|k| !k.is_empty()),
    };
    let outcome = state
        .storage
        .recharge(auth.tenant(), auth.actor(), id, recharge)
        .await?;
    Ok(Json(
        json!({ "success": true, "newBalance": outcome.new_balance }),
    ))
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpiryBody {
    #[serde(default, deserialize_with = "nullable")]
    expires_at: Option<Option<DateTime<Utc>>>,
}

pub async fn expiry(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ExpiryBody>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersEdit)?;
    let at = body
        .expires_at
        .ok_or_else(|| ApiError::field("expiresAt", "expiresAt is required (null for never)"))?;
    let detail = state
        .storage
        .change_customer(
            auth.tenant(),
            auth.actor(),
            parse_id(&id)?,
            "expiry",
            move |p| p.expires_at = Some(at),
        )
        .await?;
    Ok(Json(
        json!({ "success": true, "expiresAt": detail.expires_at }),
    ))
}

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(rename = "CustomerPackageBody")]
pub struct PackageBody {
    #[serde(default, deserialize_with = "nullable")]
    package_id: Option<Option<Uuid>>,
}

pub async fn package(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PackageBody>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersEdit)?;
    let package = body
        .package_id
        .ok_or_else(|| ApiError::field("packageId", "packageId is required"))?;
    let detail = state
        .storage
        .change_customer(
            auth.tenant(),
            auth.actor(),
            parse_id(&id)?,
            "package",
            move |p| p.package_id = Some(package),
        )
        .await?;
    let package = detail
        .package
        .map(|p| json!({ "id": p.id, "name": p.name }));
    Ok(Json(json!({ "success": true, "package": package })))
}

pub async fn suspend(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersEdit)?;
    let detail = state
        .storage
        .change_customer(
            auth.tenant(),
            auth.actor(),
            parse_id(&id)?,
            "suspend",
            |p| p.suspended = Some(true),
        )
        .await?;
    Ok(Json(json!({ "success": true, "status": detail.status })))
}

/// Clears both `suspended` and `disabled`; the answer is the derived status (a customer past
/// its expiry is `expired`, not `active`).
pub async fn activate(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersEdit)?;
    let detail = state
        .storage
        .change_customer(
            auth.tenant(),
            auth.actor(),
            parse_id(&id)?,
            "activate",
            |p| {
                p.suspended = Some(false);
                p.disabled = Some(false);
            },
        )
        .await?;
    Ok(Json(json!({ "success": true, "status": detail.status })))
}

pub async fn audit(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<PageQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    auth.require(Permission::AuditView)?;
    let (page, size) = paging(q.page.as_deref(), q.page_size.as_deref())?;
    Ok(Json(
        state
            .storage
            .customer_audit(auth.tenant(), parse_id(&id)?, page, size)
            .await?,
    ))
}

pub async fn restore(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersDelete)?;
    state
        .storage
        .restore_customer(auth.tenant(), auth.actor(), parse_id(&id)?)
        .await?;
    Ok(Json(json!({ "success": true })))
}

pub async fn anonymize(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Permission::CustomersAnonymize)?;
    state
        .storage
        .anonymize_customer(auth.tenant(), auth.actor(), parse_id(&id)?)
        .await?;
    Ok(Json(json!({ "success": true })))
}
