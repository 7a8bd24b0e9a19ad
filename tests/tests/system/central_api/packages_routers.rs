//! Packages and routers CRUD, validation, enrollment tokens, tenant isolation.

use super::harness::Central;
use serde_json::json;

#[tokio::test]
async fn packages_crud_and_validation() {
    let c = Central::start().await;
    let t = c.admin().await;
    let body = json!({"name": "Home", "price": 19.99, "downloadSpeed": 10, "uploadSpeed": 0.512, "validityDays": 30,
        "dataLimit": 1000000000, "sessionTimeLimit": 3600,
        "burst": {"downloadSpeed": 20, "uploadSpeed": 1, "timeSecs": 16}});
    let r = c.post("/api/packages", &t, body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["price"].to_string(), "19.99");
    assert_eq!(r.body["uploadSpeed"].to_string(), "0.512");
    assert_eq!(r.body["rateLimit"], "512k/10M 1M/20M 512k/10M 16/16");
    let id = r.id();
    assert_eq!(
        c.get(&format!("/api/packages/{id}"), &t).await.body["name"],
        "Home"
    );
    assert_eq!(c.get("/api/packages", &t).await.body["total"], 1);
    let u = c
        .put(
            &format!("/api/packages/{id}"),
            &t,
            json!({"price": 25, "dataLimit": null}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["price"], 25);
    assert!(u.body["dataLimit"].is_null());
    for (bad, field) in [
        (
            json!({"name": "", "price": 1, "downloadSpeed": 1, "uploadSpeed": 1, "validityDays": 1}),
            Some("name"),
        ),
        (
            json!({"name": "x", "price": -1, "downloadSpeed": 1, "uploadSpeed": 1, "validityDays": 1}),
            Some("price"),
        ),
        (
            json!({"name": "x", "price": 1, "downloadSpeed": 1, "uploadSpeed": 1, "validityDays": 0}),
            Some("validityDays"),
        ),
        (
            json!({"name": "x", "price": 1, "uploadSpeed": 1, "validityDays": 1}),
            Some("downloadSpeed"),
        ),
        (
            json!({"name": "x", "price": 1.001, "downloadSpeed": 1, "uploadSpeed": 1, "validityDays": 1}),
            None,
        ),
        (
            json!({"name": "x", "price": 1, "downloadSpeed": 1, "uploadSpeed": 1, "validityDays": 1, "colour": "red"}),
            None,
        ),
    ] {
        let r = c.post("/api/packages", &t, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.error_field(), field, "{bad} -> {}", r.body);
    }
    // In use: 409; unused: deleted.
    let customer = c.customer(&t, "alice", json!({"packageId": id})).await;
    assert_eq!(customer.status, 201);
    assert_eq!(
        c.delete(&format!("/api/packages/{id}"), &t).await.status,
        409
    );
    assert_eq!(
        c.delete(&format!("/api/customers/{}", customer.id()), &t)
            .await
            .status,
        200
    );
    assert_eq!(
        c.delete(&format!("/api/packages/{id}"), &t).await.status,
        200
    );
    assert_eq!(c.get(&format!("/api/packages/{id}"), &t).await.status, 404);
}

#[tokio::test]
async fn routers_crud_status_and_enrollment() {
    let c = Central::start().await;
    let t = c.admin().await;
    let r = c
        .post(
            "/api/routers",
            &t,
            json!({"name": "POP 1", "ipAddress": "192.168.88.1", "location": "Nairobi"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "pending");
    assert!(r.body["lastSeen"].is_null());
    let id = r.id();
    let bad = c
        .post(
            "/api/routers",
            &t,
            json!({"name": "x", "ipAddress": "999.1.1.1"}),
        )
        .await;
    assert_eq!((bad.status, bad.error_field()), (400, Some("ipAddress")));
    let u = c
        .put(
            &format!("/api/routers/{id}"),
            &t,
            json!({"name": "POP One", "location": null}),
        )
        .await;
    assert_eq!(u.body["name"], "POP One");
    assert!(u.body.get("location").is_none() || u.body["location"].is_null());
    assert_eq!(c.get("/api/routers", &t).await.body["total"], 1);
    let e = c
        .post(&format!("/api/routers/{id}/enroll"), &t, json!({}))
        .await;
    assert_eq!(e.status, 201, "{}", e.body);
    assert_eq!(e.body["token"].as_str().unwrap().len(), 64);
    assert!(e.body["expiresAt"].is_string());
    let e2 = c
        .post(&format!("/api/routers/{id}/enroll"), &t, json!({}))
        .await;
    assert_ne!(e.body["token"], e2.body["token"]);
    // The token is stored hashed, never in clear.
    let db = std::fs::read(c.data_dir().join("central.sqlite3")).unwrap_or_default();
    let wal = std::fs::read(c.data_dir().join("central.sqlite3-wal")).unwrap_or_default();
    let token = e2.body["token"].as_str().unwrap().as_bytes().to_vec();
    assert!(
        !db.windows(token.len()).any(|w| w == token)
            && !wal.windows(token.len()).any(|w| w == token)
    );
    let customer = c.customer(&t, "alice", json!({"nasId": id})).await;
    assert_eq!(customer.status, 201, "{}", customer.body);
    assert_eq!(
        c.delete(&format!("/api/routers/{id}"), &t).await.status,
        409
    );
    assert_eq!(
        c.delete(&format!("/api/customers/{}", customer.id()), &t)
            .await
            .status,
        200
    );
    assert_eq!(
        c.delete(&format!("/api/routers/{id}"), &t).await.status,
        200
    );
    assert_eq!(c.get(&format!("/api/routers/{id}"), &t).await.status, 404);
    assert_eq!(
        c.post(&format!("/api/routers/{id}/enroll"), &t, json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn tenants_never_see_each_others_packages_routers_or_operators() {
    let c = Central::start().await;
    let a = c.admin().await;
    c.add_tenant("other", "boss");
    let b = c
        .login("other", "boss", super::harness::ADMIN_PASSWORD)
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let (package, router) = c.package_and_router(&a).await;
    for path in [
        format!("/api/packages/{package}"),
        format!("/api/routers/{router}"),
    ] {
        assert_eq!(c.get(&path, &b).await.status, 404);
        assert_eq!(c.put(&path, &b, json!({"name": "mine"})).await.status, 404);
        assert_eq!(c.delete(&path, &b).await.status, 404);
    }
    assert_eq!(
        c.post(&format!("/api/routers/{router}/enroll"), &b, json!({}))
            .await
            .status,
        404
    );
    assert_eq!(c.get("/api/packages", &b).await.body["total"], 0);
    assert_eq!(c.get("/api/routers", &b).await.body["total"], 1 - 1);
    assert_eq!(c.get("/api/operators", &b).await.body["total"], 1);
    let me = c.get("/api/auth/me", &a).await.id();
    assert_eq!(c.get(&format!("/api/operators/{me}"), &b).await.status, 404);
    // Another tenant's package cannot be assigned.
    let r = c.customer(&b, "alice", json!({"packageId": package})).await;
    assert_eq!((r.status, r.error_field()), (400, Some("packageId")));
}
