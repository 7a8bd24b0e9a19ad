//! Health, login/logout, token handling, login throttling, CLI behaviour.

use super::harness::{ADMIN_PASSWORD, Central, central_binary};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn health_needs_no_token_and_everything_else_does() {
    let c = Central::start().await;
    let r = c.call(Method::GET, "/api/health", None, None).await;
    assert_eq!(r.status, 200);
    for path in [
        "/api/customers",
        "/api/packages",
        "/api/routers",
        "/api/operators",
        "/api/auth/me",
    ] {
        let r = c.call(Method::GET, path, None, None).await;
        assert_eq!(r.status, 401, "{path}");
        assert_eq!(r.error_code(), "unauthorized");
        let r = c.call(Method::GET, path, Some("not-a-token"), None).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let r = c.call(Method::GET, "/api/nothing-here", None, None).await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let c = Central::start().await;
    let wrong = c.login(&c.tenant, "admin", "not-the-password").await;
    let unknown = c.login(&c.tenant, "nobody", "not-the-password").await;
    let no_tenant = c.login("no-such-tenant", "admin", ADMIN_PASSWORD).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.body, no_tenant.body);
    // The tenant may be named by id or by name.
    assert_eq!(c.login("ACME", "admin", ADMIN_PASSWORD).await.status, 200);
    let ok = c.login(&c.tenant, "admin", ADMIN_PASSWORD).await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["token"].as_str().unwrap().len(), 64);
    assert!(ok.body["expiresAt"].is_string());
    let missing = c
        .call(
            Method::POST,
            "/api/auth/login",
            None,
            Some(json!({"tenant": c.tenant})),
        )
        .await;
    assert_eq!(missing.status, 400);
}

#[tokio::test]
async fn logout_revokes_the_token() {
    let c = Central::start().await;
    let token = c.admin().await;
    let me = c.get("/api/auth/me", &token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["role"], "admin");
    assert!(
        me.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "pppoe:add_user")
    );
    assert_eq!(
        c.call(Method::POST, "/api/auth/logout", Some(&token), None)
            .await
            .status,
        200
    );
    assert_eq!(c.get("/api/customers", &token).await.status, 401);
}

#[tokio::test]
async fn repeated_failures_are_throttled_per_user_and_per_address() {
    let c = Central::start_with(&[
        "--login-failures-per-user",
        "3",
        "--login-failures-per-address",
        "5",
    ])
    .await;
    for _ in 0..3 {
        assert_eq!(
            c.login(&c.tenant, "admin", "wrong-password").await.status,
            401
        );
    }
    let blocked = c.login(&c.tenant, "admin", ADMIN_PASSWORD).await;
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert!(blocked.headers.get("retry-after").is_some());
    // Other usernames from the same address: two more failures reach the address limit.
    assert_eq!(c.login(&c.tenant, "x1", "wrong-password").await.status, 401);
    assert_eq!(c.login(&c.tenant, "x2", "wrong-password").await.status, 401);
    assert_eq!(c.login(&c.tenant, "x3", "wrong-password").await.status, 429);
}

#[tokio::test]
async fn tokens_expire_after_the_configured_lifetime() {
    // Tokens live at least an hour; check the stored expiry is honoured by asking for it.
    let c = Central::start_with(&["--token-ttl-hours", "1"]).await;
    let r = c.login(&c.tenant, "admin", ADMIN_PASSWORD).await;
    let expires: chrono::DateTime<chrono::Utc> =
        r.body["expiresAt"].as_str().unwrap().parse().unwrap();
    let left = expires - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(55) && left <= chrono::Duration::minutes(60),
        "{left}"
    );
}

#[test]
fn help_explains_every_command_and_option() {
    for args in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["tenant", "add", "--help"],
    ] {
        let out = std::process::Command::new(central_binary())
            .args(&args)
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("--data-dir"), "{text}");
        if args[0] == "serve" {
            for option in [
                "--http",
                "--mqtt",
                "--customer-create-rate",
                "--retention-days",
                "--log-format",
            ] {
                assert!(text.contains(option), "{option} in {text}");
            }
        }
    }
}

#[test]
fn tenant_add_without_password_source_fails_and_key_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let out = std::process::Command::new(central_binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["tenant", "add", "--name", "x", "--admin", "admin"])
        .env_remove("EASYISP_ADMIN_PASSWORD")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("EASYISP_ADMIN_PASSWORD"));
    let id = super::harness::add_tenant(&data, "x", "admin", None);
    assert_eq!(id.len(), 36);
    let key = std::fs::metadata(data.join("customer-secrets.key")).unwrap();
    assert_eq!(key.len(), 32);
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    // Tenant names are unique.
    let out = std::process::Command::new(central_binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["tenant", "add", "--name", "X", "--admin", "admin"])
        .env("EASYISP_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test]
async fn openapi_document_lists_the_customer_routes() {
    let c = Central::start().await;
    let r = c.call(Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["openapi"], "3.1.0");
    for path in [
        "/api/customers",
        "/api/customers/{id}/recharge",
        "/api/routers/{id}/enroll",
    ] {
        assert!(r.body["paths"][path].is_object(), "{path}");
    }
    // Every documented route is routed: no 405, and no 404 where no id is involved.
    let token = c.admin().await;
    let paths = r.body["paths"].as_object().unwrap();
    assert!(paths.len() >= 20);
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            if path == "/api/auth/logout" {
                continue;
            }
            let concrete = path.replace("{id}", &uuid::Uuid::now_v7().to_string());
            let method: Method = method.to_uppercase().parse().unwrap();
            let body = (method != Method::GET).then(|| json!({}));
            let answer = c.call(method.clone(), &concrete, Some(&token), body).await;
            assert_ne!(answer.status, 405, "{method} {path}");
            if !path.contains("{id}") {
                assert_ne!(answer.status, 404, "{method} {path}");
            }
        }
    }
}

/// The schema `schema` stands for in the document: the target of its `$ref`, if it has one.
fn resolved<'d>(doc: &'d Value, schema: &'d Value) -> &'d Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Fails unless the object `value` has every property `schema` requires and none it does not
/// describe, and the same for its properties whose schemas are objects of their own.
fn assert_fits(doc: &Value, value: &Value, schema: &Value, at: &str) {
    let schema = resolved(doc, schema);
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{at}: {value} is not an object"));
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().unwrap();
        assert!(
            object.contains_key(required),
            "{at}: {required} missing from {value}"
        );
    }
    for (key, inner) in object {
        let described = properties
            .get(key)
            .unwrap_or_else(|| panic!("{at}: {key} is not in the schema {schema}"));
        let described = resolved(doc, described);
        match inner {
            Value::Object(_) => assert_fits(doc, inner, described, &format!("{at}.{key}")),
            Value::Array(items) => {
                for item in items.iter().filter(|i| i.is_object()) {
                    assert_fits(doc, item, &described["items"], &format!("{at}.{key}[]"));
                }
            }
            _ => {}
        }
    }
}

/// The document's bodies say what the handlers do: leaving out any field a create route lists
/// as required is a 400 naming that field, and the answer to a valid request has exactly the
/// properties its schema promises.
#[tokio::test]
async fn openapi_required_fields_are_required() {
    let c = Central::start().await;
    let doc = c
        .call(Method::GET, "/api/openapi.json", None, None)
        .await
        .body;
    let token = c.admin().await;
    let (package, router) = c.package_and_router(&token).await;
    let creates = [
        (
            "/api/operators",
            json!({"username": "clerk", "password": "Clerk-Secret-pass-7", "role": "viewer"}),
        ),
        (
            "/api/packages",
            json!({"name": "Gold", "price": 2500.5, "downloadSpeed": 20, "uploadSpeed": 10, "validityDays": 30}),
        ),
        (
            "/api/routers",
            json!({"name": "POP 2", "ipAddress": "10.0.0.2"}),
        ),
        (
            "/api/customers",
            json!({"username": "schema1", "password": "Zebra-Lamp-42", "name": "Schema One",
                   "packageId": package, "nasId": router, "phone": "+254700000009"}),
        ),
        (
            "/api/auth/login",
            json!({"tenant": c.tenant, "username": "admin", "password": ADMIN_PASSWORD}),
        ),
    ];
    for (path, body) in creates {
        let op = &doc["paths"][path]["post"];
        let request = resolved(
            &doc,
            &op["requestBody"]["content"]["application/json"]["schema"],
        );
        assert!(request["properties"].is_object(), "{path}: {request}");
        let required = op["requestBody"]["content"]["application/json"]["schema"]["required"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}: no required fields in {op}"));
        for field in required {
            let field = field.as_str().unwrap();
            assert!(request["properties"][field].is_object(), "{path}: {field}");
            let mut partial = body.clone();
            partial.as_object_mut().unwrap().remove(field);
            let r = c.post(path, &token, partial).await;
            assert_eq!(r.status, 400, "{path} without {field}: {}", r.body);
            assert_eq!(
                r.error_field(),
                Some(field),
                "{path} without {field}: {}",
                r.body
            );
        }
        let r = c.post(path, &token, body).await;
        let (status, answer) = op["responses"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(code, _)| code.starts_with('2'))
            .unwrap();
        assert_eq!(r.status.to_string(), *status, "{path}: {}", r.body);
        let schema = &answer["content"]["application/json"]["schema"];
        assert!(
            resolved(&doc, schema)["properties"].is_object(),
            "{path}: {answer}"
        );
        assert_fits(&doc, &r.body, schema, path);
    }
    // The reads the creates feed, and the list's query parameters.
    let customers = &doc["paths"]["/api/customers"]["get"];
    let parameters: Vec<&str> = customers["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in [
        "page",
        "pageSize",
        "search",
        "status",
        "connectionType",
        "packageId",
        "cursor",
    ] {
        assert!(parameters.contains(&name), "{name} in {parameters:?}");
    }
    for path in [
        "/api/customers",
        "/api/packages",
        "/api/routers",
        "/api/operators",
    ] {
        let r = c.get(path, &token).await;
        let schema =
            &doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_fits(&doc, &r.body, schema, path);
    }
}
