//! Operators CRUD and the permissions of each built-in role.

use super::harness::Central;
use serde_json::json;

#[tokio::test]
async fn operators_crud_with_validation() {
    let c = Central::start().await;
    let admin = c.admin().await;
    let r = c
        .post(
            "/api/operators",
            &admin,
            json!({"username": "cashier1", "password": "staff-Secret-pass-2", "role": "cashier"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["role"], "cashier");
    assert!(
        r.body["permissions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "finance:income_create")
    );
    let id = r.id();
    let dup = c
        .post(
            "/api/operators",
            &admin,
            json!({"username": "CASHIER1", "password": "staff-Secret-pass-2", "role": "viewer"}),
        )
        .await;
    assert_eq!(dup.status, 409);
    let weak = c
        .post(
            "/api/operators",
            &admin,
            json!({"username": "x", "password": "short", "role": "viewer"}),
        )
        .await;
    assert_eq!((weak.status, weak.error_field()), (400, Some("password")));
    let role = c
        .post(
            "/api/operators",
            &admin,
            json!({"username": "y", "password": "staff-Secret-pass-2", "role": "boss"}),
        )
        .await;
    assert_eq!((role.status, role.error_field()), (400, Some("role")));
    let list = c.get("/api/operators", &admin).await;
    assert_eq!(list.body["total"], 2);
    let updated = c
        .put(
            &format!("/api/operators/{id}"),
            &admin,
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(updated.body["role"], "viewer");
    assert_eq!(
        c.get(&format!("/api/operators/{id}"), &admin).await.body["role"],
        "viewer"
    );
    // A new password revokes the operator's sessions.
    let login = c.login(&c.tenant, "cashier1", "staff-Secret-pass-2").await;
    let token = login.body["token"].as_str().unwrap().to_string();
    let r = c
        .put(
            &format!("/api/operators/{id}"),
            &admin,
            json!({"password": "staff-Secret-pass-3"}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(c.get("/api/customers", &token).await.status, 401);
    assert_eq!(
        c.login(&c.tenant, "cashier1", "staff-Secret-pass-3")
            .await
            .status,
        200
    );
    assert_eq!(
        c.delete(&format!("/api/operators/{id}"), &admin)
            .await
            .status,
        200
    );
    assert_eq!(
        c.get(&format!("/api/operators/{id}"), &admin).await.status,
        404
    );
    assert_eq!(
        c.login(&c.tenant, "cashier1", "staff-Secret-pass-3")
            .await
            .status,
        401
    );
    // The last admin stays.
    let me = c.get("/api/auth/me", &admin).await.id();
    assert_eq!(
        c.delete(&format!("/api/operators/{me}"), &admin)
            .await
            .status,
        409
    );
    assert_eq!(
        c.put(
            &format!("/api/operators/{me}"),
            &admin,
            json!({"role": "viewer"})
        )
        .await
        .status,
        409
    );
}

#[tokio::test]
async fn each_role_gets_exactly_its_permissions() {
    let c = Central::start().await;
    let admin = c.admin().await;
    let (package, _router) = c.package_and_router(&admin).await;
    let customer = c.customer(&admin, "alice", json!({})).await.id();
    let tech = c.operator(&admin, "tech", "technician").await;
    let cashier = c.operator(&admin, "cash", "cashier").await;
    let viewer = c.operator(&admin, "view", "viewer").await;
    let path = format!("/api/customers/{customer}");
    let recharge = format!("{path}/recharge");

    for token in [&tech, &cashier, &viewer] {
        assert_eq!(c.get("/api/customers", token).await.status, 200);
        assert_eq!(c.get(&path, token).await.status, 200);
        assert_eq!(c.get("/api/packages", token).await.status, 200);
        assert_eq!(c.get("/api/routers", token).await.status, 200);
        assert_eq!(c.get("/api/operators", token).await.status, 403);
        let r = c.post("/api/packages", token, json!({"name": "x", "price": 1, "downloadSpeed": 1, "uploadSpeed": 1, "validityDays": 1})).await;
        assert_eq!(r.status, 403);
        assert_eq!(r.error_code(), "forbidden");
    }
    // Technician: customers and routers, no money.
    assert_eq!(c.customer(&tech, "bob", json!({})).await.status, 201);
    assert_eq!(
        c.put(&path, &tech, json!({"name": "Alice B"})).await.status,
        200
    );
    assert_eq!(
        c.post(
            "/api/routers",
            &tech,
            json!({"name": "R2", "ipAddress": "10.0.0.2"})
        )
        .await
        .status,
        201
    );
    assert_eq!(
        c.post(&recharge, &tech, json!({"amount": 5})).await.status,
        403
    );
    assert_eq!(c.get(&format!("{path}/payments"), &tech).await.status, 403);
    // Cashier: view + income.
    assert_eq!(
        c.post(&recharge, &cashier, json!({"amount": 5}))
            .await
            .status,
        200
    );
    assert_eq!(
        c.get(&format!("{path}/payments"), &cashier).await.status,
        200
    );
    assert_eq!(c.customer(&cashier, "carol", json!({})).await.status, 403);
    assert_eq!(
        c.put(&path, &cashier, json!({"name": "X"})).await.status,
        403
    );
    assert_eq!(c.delete(&path, &cashier).await.status, 403);
    assert_eq!(
        c.put(
            &format!("{path}/package"),
            &cashier,
            json!({"packageId": package})
        )
        .await
        .status,
        403
    );
    // Viewer: read-only.
    assert_eq!(
        c.post(&recharge, &viewer, json!({"amount": 5}))
            .await
            .status,
        403
    );
    assert_eq!(c.customer(&viewer, "dave", json!({})).await.status, 403);
    assert_eq!(
        c.put_empty(&format!("{path}/suspend"), &viewer)
            .await
            .status,
        403
    );
    assert_eq!(
        c.post(
            "/api/routers",
            &viewer,
            json!({"name": "R3", "ipAddress": "10.0.0.3"})
        )
        .await
        .status,
        403
    );
    assert_eq!(
        c.call(
            reqwest::Method::POST,
            &format!("{path}/anonymize"),
            Some(&tech),
            None
        )
        .await
        .status,
        403
    );
    assert_eq!(c.get(&format!("{path}/audit"), &viewer).await.status, 200);
    // Technician may delete and restore.
    assert_eq!(c.delete(&path, &tech).await.status, 200);
    assert_eq!(
        c.call(
            reqwest::Method::POST,
            &format!("{path}/restore"),
            Some(&tech),
            None
        )
        .await
        .status,
        200
    );
}
