//! Customer list, detail, create, update and soft delete: the seed's shapes exactly, plus
//! `nextCursor` (keyset pagination) and `totalExact` (false when a search total is capped).

use super::AppState;
use super::customer_input::CustomerBody;
use super::error::ApiError;
use super::extract::{Auth, JsonBody, QueryParams, parse_id};
use crate::permissions::Permission;
use crate::storage::CustomerFilter;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::Utc;
use easyisp_protocol::customer::{CustomerDetail, CustomerSummary};
use easyisp_protocol::{ConnectionType, CustomerStatus};
use serde::{Deserialize, Serialize};
use std::time::Instant;

pub const DEFAULT_PAGE_SIZE: u32 = 20;
pub const MAX_PAGE_SIZE: u32 = 100;

#[derive(schemars::JsonSchema, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    /// Page number, from 1 (default 1); prefer `cursor` past the first few thousand rows.
    page: Option<String>,
    /// Customers per page, 1 to 100 (default 20).
    page_size: Option<String>,
    /// Substring of the username, name or phone, case-insensitive.
    search: Option<String>,
    /// `active`, `expired`, `suspended` or `disabled`.
    status: Option<String>,
    /// `PPPOE`, `HOTSPOT`, `DHCP` or `STATIC` (any case).
    connection_type: Option<String>,
    /// A package id.
    package_id: Option<String>,
    /// The `nextCursor` of the previous page: the page after it, newest first.
    cursor: Option<String>,
}

#[derive(schemars::JsonSchema, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListResponse {
    customers: Vec<CustomerSummary>,
    total: u64,
    page: u32,
    page_size: u32,
    next_cursor: Option<String>,
    total_exact: bool,
}

/// `page` (≥ 1) and `pageSize` (1..=100, default 20) from query text.
pub fn paging(page: Option<&str>, page_size: Option<&str>) -> Result<(u32, u32), ApiError> {
    let number = |field: &str, text: Option<&str>, default: u32| -> Result<u32, ApiError> {
        match text.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(default),
            Some(t) => t
                .parse::<u32>()
                .map_err(|_| ApiError::field(field, format!("{field} must be a positive integer"))),
        }
    };
    let page = number("page", page, 1)?.max(1);
    let size = number("pageSize", page_size, DEFAULT_PAGE_SIZE)?.clamp(1, MAX_PAGE_SIZE);
    Ok((page, size))
}

fn some(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<ListResponse>, ApiError> {
    auth.require(Permission::CustomersView)?;
    let (page, page_size) = paging(q.page.as_deref(), q.page_size.as_deref())?;
    let status = some(q.status)
        .map(|s| {
            s.parse::<CustomerStatus>()
                .map_err(|e| ApiError::field("status", e.to_string()))
        })
        .transpose()?;
    let connection_type = some(q.connection_type)
        .map(|s| {
            s.parse::<ConnectionType>()
                .map_err(|e| ApiError::field("connectionType", e.to_string()))
        })
        .transpose()?;
    let package_id = some(q.package_id)
        .map(|s| {
            uuid::Uuid::parse_str(&s)
                .map_err(|_| ApiError::field("packageId", "packageId must be a UUID"))
        })
        .transpose()?;
    let cursor = some(q.cursor)
        .map(|s| {
            s.parse::<i64>().map_err(|_| {
                ApiError::field(
                    "cursor",
                    "cursor must be a nextCursor value from a previous page",
                )
            })
        })
        .transpose()?;
    let search = some(q.search);
    if search.as_ref().is_some_and(|s| s.chars().count() > 100) {
        return Err(ApiError::field(
            "search",
            "search must be at most 100 characters",
        ));
    }
    // Each skipped search match costs a lookup: deep search pages go by cursor.
    if search.is_some() && cursor.is_none() && u64::from(page - 1) * u64::from(page_size) > 10_000 {
        return Err(ApiError::field(
            "page",
            "search results past the first 10,000 are reached by following nextCursor",
        ));
    }
    let filter = CustomerFilter {
        search,
        status,
        connection_type,
        package_id,
        cursor,
        page,
        page_size,
    };
    let result = state
        .storage
        .list_customers(auth.tenant(), filter, Utc::now())
        .await?;
    Ok(Json(ListResponse {
        customers: result.customers,
        total: result.total,
        page,
        page_size,
        next_cursor: result.next_cursor,
        total_exact: result.total_exact,
    }))
}

pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<CustomerDetail>, ApiError> {
    auth.require(Permission::CustomersView)?;
    Ok(Json(
        state
            .storage
            .get_customer(auth.tenant(), parse_id(&id)?, Utc::now())
            .await?,
    ))
}

pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    JsonBody(body): JsonBody<CustomerBody>,
) -> Result<(StatusCode, Json<CustomerDetail>), ApiError> {
    auth.require(Permission::CustomersAdd)?;
    if let Err(retry_after_secs) = state
        .create_limiter
        .take(&auth.tenant().to_string(), Instant::now())
    {
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let calling_code = state.calling_code(auth.tenant()).await?;
    let input = body.into_new(calling_code.as_deref())?;
    let detail = state
        .storage
        .create_customer(auth.tenant(), auth.actor(), input)
        .await?;
    Ok((StatusCode::CREATED, Json(detail)))
}

pub async fn update(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<CustomerBody>,
) -> Result<Json<CustomerDetail>, ApiError> {
    auth.require(Permission::CustomersEdit)?;
    let id = parse_id(&id)?;
    let current = state
        .storage
        .get_customer(auth.tenant(), id, Utc::now())
        .await?;
    let calling_code = state.calling_code(auth.tenant()).await?;
    let patch = body.into_patch(calling_code.as_deref(), &current.username)?;
    Ok(Json(
        state
            .storage
            .update_customer(auth.tenant(), auth.actor(), id, patch)
            .await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    auth.require(Permission::CustomersDelete)?;
    state
        .storage
        .delete_customer(auth.tenant(), auth.actor(), parse_id(&id)?)
        .await?;
    Ok(Json(serde_json::json!({ "success": true })))
}
