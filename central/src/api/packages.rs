//! Packages CRUD: view with `packages:view`, change with `packages:manage`.

use super::AppState;
use super::error::ApiError;
use super::extract::{Auth, JsonBody, nullable, parse_id};
use crate::permissions::Permission;
use crate::storage::{PackageInput, PackagePatch};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use easyisp_protocol::money::Money;
use easyisp_protocol::package::{Burst, PackageView, Speed};
use easyisp_protocol::validate;
use serde::Deserialize;

/// 10 years: longer validities are typos.
const MAX_VALIDITY_DAYS: u32 = 3650;

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageBody {
    name: Option<String>,
    price: Option<Money>,
    download_speed: Option<Speed>,
    upload_speed: Option<Speed>,
    validity_days: Option<u32>,
    #[serde(default, deserialize_with = "nullable")]
    data_limit: Option<Option<u64>>,
    #[serde(default, deserialize_with = "nullable")]
    session_time_limit: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    burst: Option<Option<Burst>>,
}

fn check(body: &PackageBody) -> Result<(), ApiError> {
    if let Some(name) = &body.name {
        validate::required_text("name", name, validate::TEXT_MAX)?;
    }
    if let Some(price) = body.price {
        price
            .price()
            .map_err(|e| ApiError::field("price", e.to_string()))?;
    }
    if let Some(days) = body.validity_days
        && !(1..=MAX_VALIDITY_DAYS).contains(&days)
    {
        return Err(ApiError::field(
            "validityDays",
            format!("validityDays must be between 1 and {MAX_VALIDITY_DAYS}"),
        ));
    }
    if let Some(Some(0)) = body.session_time_limit {
        return Err(ApiError::field(
            "sessionTimeLimit",
            "sessionTimeLimit must be positive, or null for unlimited",
        ));
    }
    if let Some(Some(burst)) = body.burst
        && burst.time_secs == 0
    {
        return Err(ApiError::field("burst", "burst.timeSecs must be positive"));
    }
    Ok(())
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::field(field, format!("{field} is required")))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<PackageBody>,
) -> Result<(StatusCode, Json<PackageView>), ApiError> {
    auth.require(Permission::PackagesManage)?;
    check(&body)?;
    let input = PackageInput {
        name: required(body.name, "name")?.trim().to_string(),
        price: required(body.price, "price")?,
        download_speed: required(body.download_speed, "downloadSpeed")?,
        upload_speed: required(body.upload_speed, "uploadSpeed")?,
        validity_days: required(body.validity_days, "validityDays")?,
        data_limit: body.data_limit.flatten(),
        session_time_limit: body.session_time_limit.flatten(),
        burst: body.burst.flatten(),
    };
    let view = state
        .storage
        .create_package(auth.tenant(), auth.actor(), input)
        .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::PackagesView)?;
    let packages = state.storage.list_packages(auth.tenant()).await?;
    Ok(Json(
        serde_json::json!({ "total": packages.len(), "packages": packages }),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<PackageView>, ApiError> {
    auth.require(Permission::PackagesView)?;
    Ok(Json(
        state
            .storage
            .get_package(auth.tenant(), parse_id(&id)?)
            .await?,
    ))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<PackageBody>,
) -> Result<Json<PackageView>, ApiError> {
    auth.require(Permission::PackagesManage)?;
    let id = parse_id(&id)?;
    check(&body)?;
    let patch = PackagePatch {
        name: body.name.map(|n| n.trim().to_string()),
        price: body.price,
        download_speed: body.download_speed,
        upload_speed: body.upload_speed,
        validity_days: body.validity_days,
        data_limit: body.data_limit,
        session_time_limit: body.session_time_limit,
        burst: body.burst,
    };
    Ok(Json(
        state
            .storage
            .update_package(auth.tenant(), auth.actor(), id, patch)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::PackagesManage)?;
    state
        .storage
        .delete_package(auth.tenant(), auth.actor(), parse_id(&id)?)
        .await?;
    Ok(Json(serde_json::json!({ "success": true })))
}
