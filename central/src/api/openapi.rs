//! `GET /api/openapi.json`: an OpenAPI 3.1 document built from the route table below, which
//! lists every route of `api::router` with its permission and success status. The system
//! test `openapi_document_lists_the_customer_routes` calls every listed route and fails if
//! one is not routed, keeping the table and the router in step.
//!
//! Request and response bodies (`bodies`) and query parameters (`queries`) are described by
//! JSON Schemas derived from the very types the handlers deserialise and serialise (serde's
//! renames, `deny_unknown_fields` and optional fields included); the few answers a handler
//! builds as a JSON literal are described next to it here. Request types keep every field
//! optional so that a missing one is a validation error naming it; which fields a create
//! requires is listed per route, and the system test `openapi_required_fields_are_required`
//! checks each against the handler.

use super::{agents, auth, customer_actions, customer_input, customers, operators};
use super::{packages, routers};
use crate::permissions::Role;
use crate::storage::{AuditPage, LiveStatus, OperatorView, PaymentsPage, SessionsPage};
use axum::Json;
use easyisp_protocol::customer::CustomerDetail;
use easyisp_protocol::package::PackageView;
use easyisp_protocol::{CustomerStatus, Money};
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
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

/// Where derived schemas are put, and how the references to them are written.
fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| s.definitions_path = "/components/schemas".into())
        .into_generator()
}

/// A reference to `T`'s schema (or the schema itself, for a plain one like `Money`).
fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Value {
    serde_json::to_value(g.subschema_for::<T>()).unwrap_or(Value::Null)
}

/// An object whose every property is required.
fn object(properties: Value) -> Value {
    let required: Vec<&String> = properties
        .as_object()
        .map(|p| p.keys().collect())
        .unwrap_or_default();
    json!({ "type": "object", "properties": properties, "required": required })
}

fn success() -> Value {
    json!({ "const": true })
}

fn date_time_or_null() -> Value {
    json!({ "type": ["string", "null"], "format": "date-time" })
}

/// A request body's schema and the fields its handler requires.
type Request = Option<(Value, &'static [&'static str])>;

/// The request and success response bodies of a route.
fn bodies(method: &str, path: &str, g: &mut SchemaGenerator) -> (Request, Option<Value>) {
    let list = |key: &str, item: Value| {
        object(
            json!({ "total": { "type": "integer", "minimum": 0 }, key: { "type": "array", "items": item } }),
        )
    };
    let deleted = || Some(object(json!({ "success": success() })));
    match (method, path) {
        ("get", "/api/health") => (None, Some(object(json!({ "status": { "const": "ok" } })))),
        ("post", "/api/auth/login") => (
            Some((
                schema::<auth::LoginBody>(g),
                &["tenant", "username", "password"],
            )),
            Some(schema::<auth::LoginResponse>(g)),
        ),
        ("post", "/api/auth/logout") => (None, deleted()),
        ("get", "/api/auth/me") => {
            let me = object(json!({
                "id": { "type": "string", "format": "uuid" },
                "tenantId": { "type": "string", "format": "uuid" },
                "username": { "type": "string" },
                "role": schema::<Role>(g),
                "permissions": { "type": "array", "items": { "type": "string" } },
            }));
            (None, Some(me))
        }
        ("get", "/api/operators") => (None, Some(list("operators", schema::<OperatorView>(g)))),
        ("post", "/api/operators") => (
            Some((
                schema::<operators::OperatorBody>(g),
                &["username", "password", "role"],
            )),
            Some(schema::<OperatorView>(g)),
        ),
        ("get", "/api/operators/{id}") => (None, Some(schema::<OperatorView>(g))),
        ("put", "/api/operators/{id}") => (
            Some((schema::<operators::OperatorBody>(g), &[])),
            Some(schema::<OperatorView>(g)),
        ),
        ("get", "/api/packages") => (None, Some(list("packages", schema::<PackageView>(g)))),
        ("post", "/api/packages") => (
            Some((
                schema::<packages::PackageBody>(g),
                &[
                    "name",
                    "price",
                    "downloadSpeed",
                    "uploadSpeed",
                    "validityDays",
                ],
            )),
            Some(schema::<PackageView>(g)),
        ),
        ("get", "/api/packages/{id}") => (None, Some(schema::<PackageView>(g))),
        ("put", "/api/packages/{id}") => (
            Some((schema::<packages::PackageBody>(g), &[])),
            Some(schema::<PackageView>(g)),
        ),
        ("get", "/api/routers") => (
            None,
            Some(list("routers", schema::<routers::RouterWithSync>(g))),
        ),
        ("post", "/api/routers") => (
            Some((schema::<routers::RouterBody>(g), &["name", "ipAddress"])),
            Some(schema::<easyisp_protocol::router::RouterView>(g)),
        ),
        ("get", "/api/routers/{id}") => (None, Some(schema::<routers::RouterWithSync>(g))),
        ("put", "/api/routers/{id}") => (
            Some((schema::<routers::RouterBody>(g), &[])),
            Some(schema::<easyisp_protocol::router::RouterView>(g)),
        ),
        ("post", "/api/routers/{id}/enroll") => (
            None,
            Some(object(json!({
                "token": { "type": "string" },
                "expiresAt": { "type": "string", "format": "date-time" },
            }))),
        ),
        ("post", "/api/routers/{id}/revoke") => (
            None,
            Some(object(
                json!({ "success": success(), "revoked": { "type": "boolean" } }),
            )),
        ),
        ("post", "/api/agents/enroll") => (
            Some((schema::<agents::EnrollBody>(g), &["token"])),
            Some(schema::<agents::EnrollResponse>(g)),
        ),
        ("get", "/api/customers") => (None, Some(schema::<customers::ListResponse>(g))),
        ("post", "/api/customers") => (
            Some((
                schema::<customer_input::CustomerBody>(g),
                &["username", "password", "name"],
            )),
            Some(schema::<CustomerDetail>(g)),
        ),
        ("get", "/api/customers/{id}") => (None, Some(schema::<CustomerDetail>(g))),
        ("put", "/api/customers/{id}") => (
            Some((schema::<customer_input::CustomerBody>(g), &[])),
            Some(schema::<CustomerDetail>(g)),
        ),
        ("get", "/api/customers/{id}/live-status") => (None, Some(schema::<LiveStatus>(g))),
        ("get", "/api/customers/{id}/sessions") => (None, Some(schema::<SessionsPage>(g))),
        ("get", "/api/customers/{id}/payments") => (None, Some(schema::<PaymentsPage>(g))),
        ("post", "/api/customers/{id}/recharge") => (
            Some((schema::<customer_actions::RechargeBody>(g), &["amount"])),
            Some(object(
                json!({ "success": success(), "newBalance": schema::<Money>(g) }),
            )),
        ),
        ("put", "/api/customers/{id}/expiry") => (
            Some((schema::<customer_actions::ExpiryBody>(g), &["expiresAt"])),
            Some(object(
                json!({ "success": success(), "expiresAt": date_time_or_null() }),
            )),
        ),
        ("put", "/api/customers/{id}/package") => {
            let package = json!({ "oneOf": [
                { "type": "null" },
                object(json!({ "id": { "type": "string", "format": "uuid" }, "name": { "type": "string" } })),
            ] });
            (
                Some((schema::<customer_actions::PackageBody>(g), &["packageId"])),
                Some(object(json!({ "success": success(), "package": package }))),
            )
        }
        ("put", "/api/customers/{id}/suspend") | ("put", "/api/customers/{id}/activate") => (
            None,
            Some(object(
                json!({ "success": success(), "status": schema::<CustomerStatus>(g) }),
            )),
        ),
        ("get", "/api/customers/{id}/audit") => (None, Some(schema::<AuditPage>(g))),
        _ => (None, deleted()),
    }
}

/// The query parameters of a route, from the type its handler reads them into. All are text
/// to the API: the handler parses and validates them, naming the parameter in its errors.
fn queries(method: &str, path: &str) -> Vec<Value> {
    let schema = match (method, path) {
        ("get", "/api/customers") => inline::<customers::ListQuery>(),
        ("get", "/api/customers/{id}/sessions") | ("get", "/api/customers/{id}/payments") => {
            inline::<customer_actions::PageQuery>()
        }
        ("get", "/api/customers/{id}/live-status") => inline::<customer_actions::LiveStatusQuery>(),
        _ => return Vec::new(),
    };
    let properties = schema["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    properties
        .into_iter()
        .map(|(name, property)| {
            let mut schema = json!({ "type": "string" });
            if let Some(description) = property.get("description") {
                schema["description"] = description.clone();
            }
            json!({ "name": name, "in": "query", "required": false, "schema": schema })
        })
        .collect()
}

/// `T`'s schema on its own, outside the document's shared schemas.
fn inline<T: JsonSchema>() -> Value {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(Value::Null)
}

/// A JSON body as OpenAPI writes it.
fn content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

pub fn build() -> Value {
    let mut g = generator();
    let mut paths = Map::new();
    for (method, path, summary, permission, status) in ROUTES {
        let (request, response) = bodies(method, path, &mut g);
        let mut responses = Map::new();
        let mut ok = json!({ "description": "success" });
        if let Some(schema) = response {
            ok["content"] = content(schema);
        }
        responses.insert(status.to_string(), ok);
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
        let mut parameters = queries(method, path);
        if path.contains("{id}") {
            parameters.insert(0, json!({ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "format": "uuid" } }));
        }
        if !parameters.is_empty() {
            op["parameters"] = Value::Array(parameters);
        }
        if let Some((mut schema, required)) = request {
            if !required.is_empty() {
                schema["required"] = json!(required);
            }
            op["requestBody"] = json!({ "required": true, "content": content(schema) });
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
            "schemas": schemas(g),
        }
    })
}

/// The derived schemas the document refers to, and the error body every route may answer.
fn schemas(mut g: SchemaGenerator) -> Value {
    let mut schemas = g.take_definitions(true);
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "properties": { "error": {
                "type": "object",
                "properties": {
                    "code": { "type": "string" },
                    "message": { "type": "string" },
                    "field": { "type": ["string", "null"] },
                },
                "required": ["code", "message"],
            } },
            "required": ["error"],
        }),
    );
    Value::Object(schemas)
}

pub async fn document() -> Json<Value> {
    Json(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves_and_no_secret_type_leaks_its_value() {
        let doc = build();
        let text = doc.to_string();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &reference[..reference.find('"').unwrap()];
            assert!(schemas.contains_key(name), "unresolved reference {name}");
        }
        for name in [
            "CustomerDetail",
            "CustomerSummary",
            "PackageView",
            "AuditEvent",
        ] {
            assert!(schemas.contains_key(name), "{name} in {:?}", schemas.keys());
        }
        let detail = &schemas["CustomerDetail"]["properties"];
        assert!(detail["walletBalance"]["type"] == "number", "{detail}");
        assert!(detail.get("password").is_none());
    }
}
