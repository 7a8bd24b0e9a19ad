//! `GET /api/openapi.json`: an OpenAPI 3.1 document built from the route table below, which
//! lists every route of `api::router` with its permission and success status. The system
//! test `openapi_document_lists_the_customer_routes` calls every listed route and fails if
//! one is not routed, keeping the table and the router in step.

use axum::Json;
use serde_json::{Map, Value, json};

/// (method, path, summary, permission or "" for none / any operator, success status)
pub const ROUTES: &[(&str, &str, &str, &str, u16)] = &[
    (
        "get",
        "/api/health",
        "Liveness check (no authentication)",
        "",
        200,
    ),
    (
        "post",
        "/api/auth/login",
        "Log in: {tenant, username, password} -> {token, expiresAt}",
        "",
        200,
    ),
    (
        "post",
        "/api/auth/logout",
        "Revoke the presented token",
        "",
        200,
    ),
    (
        "get",
        "/api/auth/me",
        "The operator behind the token and its permissions",
        "",
        200,
    ),
    (
        "get",
        "/api/operators",
        "List operators",
        "operators:manage",
        200,
    ),
    (
        "post",
        "/api/operators",
        "Create an operator {username, password, role}",
        "operators:manage",
        201,
    ),
    (
        "get",
        "/api/operators/{id}",
        "One operator",
        "operators:manage",
        200,
    ),
    (
        "put",
        "/api/operators/{id}",
        "Change role and/or password",
        "operators:manage",
        200,
    ),
    (
        "delete",
        "/api/operators/{id}",
        "Delete an operator",
        "operators:manage",
        200,
    ),
    (
        "get",
        "/api/packages",
        "List packages",
        "packages:view",
        200,
    ),
    (
        "post",
        "/api/packages",
        "Create a package",
        "packages:manage",
        201,
    ),
    (
        "get",
        "/api/packages/{id}",
        "One package",
        "packages:view",
        200,
    ),
    (
        "put",
        "/api/packages/{id}",
        "Update a package (all fields optional)",
        "packages:manage",
        200,
    ),
    (
        "delete",
        "/api/packages/{id}",
        "Delete an unused package",
        "packages:manage",
        200,
    ),
    ("get", "/api/routers", "List routers", "routers:view", 200),
    (
        "post",
        "/api/routers",
        "Create a router {name, ipAddress, location?}",
        "routers:manage",
        201,
    ),
    (
        "get",
        "/api/routers/{id}",
        "One router with status and lastSeen",
        "routers:view",
        200,
    ),
    (
        "put",
        "/api/routers/{id}",
        "Update a router",
        "routers:manage",
        200,
    ),
    (
        "delete",
        "/api/routers/{id}",
        "Delete a router without customers",
        "routers:manage",
        200,
    ),
    (
        "post",
        "/api/routers/{id}/enroll",
        "One-time agent enrollment token {token, expiresAt}",
        "routers:manage",
        201,
    ),
    (
        "post",
        "/api/routers/{id}/revoke",
        "Delete the router's broker account; its agent is dropped {success, revoked}",
        "routers:manage",
        200,
    ),
    (
        "post",
        "/api/agents/enroll",
        "An agent redeems its enrollment token {token} -> {routerId, tenantId, routerName, mqtt {url, username, password}, caCert}; no bearer token",
        "",
        200,
    ),
    (
        "get",
        "/api/customers",
        "List customers (page, pageSize, cursor, search, status, connectionType, packageId)",
        "customers:view",
        200,
    ),
    (
        "post",
        "/api/customers",
        "Create a customer",
        "pppoe:add_user",
        201,
    ),
    (
        "get",
        "/api/customers/{id}",
        "Customer detail",
        "customers:view",
        200,
    ),
    (
        "put",
        "/api/customers/{id}",
        "Update a customer (all fields optional)",
        "pppoe:edit",
        200,
    ),
    (
        "delete",
        "/api/customers/{id}",
        "Soft-delete a customer",
        "pppoe:delete",
        200,
    ),
    (
        "get",
        "/api/customers/{id}/live-status",
        "Online status and current session (fresh=true asks the router's agent, up to 3 s)",
        "customers:view",
        200,
    ),
    (
        "post",
        "/api/customers/{id}/disconnect",
        "Drop the customer's active session at its router now {success}",
        "pppoe:edit",
        200,
    ),
    (
        "get",
        "/api/customers/{id}/sessions",
        "Session history (page, pageSize)",
        "customers:view",
        200,
    ),
    (
        "get",
        "/api/customers/{id}/payments",
        "Payments with total and totalPaid",
        "finance:view",
        200,
    ),
    (
        "post",
        "/api/customers/{id}/recharge",
        "Recharge the wallet {amount, description?, idempotencyKey?}",
        "finance:income_create",
        200,
    ),
    (
        "put",
        "/api/customers/{id}/expiry",
        "Set expiresAt",
        "pppoe:edit",
        200,
    ),
    (
        "put",
        "/api/customers/{id}/package",
        "Change package",
        "pppoe:edit",
        200,
    ),
    (
        "put",
        "/api/customers/{id}/suspend",
        "Suspend",
        "pppoe:edit",
        200,
    ),
    (
        "put",
        "/api/customers/{id}/activate",
        "Clear suspended and disabled",
        "pppoe:edit",
        200,
    ),
    (
        "get",
        "/api/customers/{id}/audit",
        "Audit trail {events, total}",
        "audit:view",
        200,
    ),
    (
        "post",
        "/api/customers/{id}/restore",
        "Undo a soft delete",
        "pppoe:delete",
        200,
    ),
    (
        "post",
        "/api/customers/{id}/anonymize",
        "Anonymise personal data now",
        "customers:anonymize",
        200,
    ),
];

fn error_response(description: &str) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

pub fn build() -> Value {
    let mut paths = Map::new();
    for (method, path, summary, permission, status) in ROUTES {
        let mut responses = Map::new();
        responses.insert(
            status.to_string(),
            json!({ "description": "success", "content": { "application/json": {} } }),
        );
        responses.insert(
            "400".into(),
            error_response("validation error or malformed JSON"),
        );
        if !permission.is_empty()
            || path.starts_with("/api/auth/logout")
            || path.starts_with("/api/auth/me")
        {
            responses.insert(
                "401".into(),
                error_response("missing, expired or revoked token"),
            );
        }
        if *path == "/api/agents/enroll" {
            responses.insert(
                "401".into(),
                error_response("enroll_token_invalid: unknown, used or expired token"),
            );
        }
        if !permission.is_empty() {
            responses.insert("403".into(), error_response("permission missing"));
        }
        if *path == "/api/customers/{id}/disconnect" {
            responses.insert(
                "409".into(),
                error_response("conflict: the customer has no router"),
            );
            responses.insert(
                "502".into(),
                error_response("router_command_failed: the router could not do it"),
            );
            responses.insert(
                "503".into(),
                error_response("agent_offline, agent_timeout (5 s) or sync_unavailable"),
            );
        }
        if path.contains("{id}") {
            responses.insert(
                "404".into(),
                error_response("no such object in this tenant"),
            );
        }
        responses.insert(
            "429".into(),
            error_response("rate limited; see Retry-After"),
        );
        let mut op = json!({ "summary": summary, "responses": responses });
        if !permission.is_empty() {
            op["x-permission"] = json!(permission);
            op["security"] = json!([{ "bearer": [] }]);
        }
        if path.contains("{id}") {
            op["parameters"] = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }]);
        }
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = op;
    }
    json!({
        "openapi": "3.1.0",
        "info": { "title": "EasyISP central API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": { "error": { "type": "object", "properties": {
                        "code": { "type": "string" }, "message": { "type": "string" }, "field": { "type": ["string", "null"] }
                    } } }
                }
            }
        }
    })
}

pub async fn document() -> Json<Value> {
    Json(build())
}
