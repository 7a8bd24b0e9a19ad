//! Customers: create/detail/update/delete/restore with the seed's shapes, validation,
//! duplicates, tenant isolation, body limits, malformed JSON, creation rate limit.

use super::harness::Central;
use serde_json::json;

#[tokio::test]
async fn create_detail_update_delete_restore_with_the_seed_shapes() {
    let c = Central::start().await;
    let t = c.admin().await;
    let (package, router) = c.package_and_router(&t).await;
    let r = c
        .customer(&t, "customer001", json!({"email": "john@example.com", "phone": "0700 000 000", "connectionType": "pppoe",
            "packageId": package, "nasId": router, "expiresAt": "2036-02-01T00:00:00Z", "location": "Nairobi, Kenya",
            "latitude": -1.286389, "longitude": 36.817223, "apartmentNumber": "A12", "houseNumber": "123"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    let d = c.get(&format!("/api/customers/{id}"), &t).await;
    assert_eq!(d.status, 200);
    let b = &d.body;
    assert_eq!(b["username"], "customer001");
    assert_eq!(b["phone"], "+254700000000");
    assert_eq!(b["connectionType"], "PPPOE");
    assert_eq!(b["status"], "active");
    assert_eq!(b["expiresAt"], "2036-02-01T00:00:00Z");
    assert_eq!(b["latitude"].to_string(), "-1.286389");
    assert_eq!(b["walletBalance"], 0);
    assert_eq!(b["totalSpent"], 0);
    assert_eq!(b["package"]["downloadSpeed"], 10);
    assert!(b["package"]["dataLimit"].is_null());
    assert_eq!(b["router"]["ipAddress"], "192.168.1.1");
    for key in [
        "id",
        "name",
        "email",
        "location",
        "longitude",
        "apartmentNumber",
        "houseNumber",
        "lastIp",
        "lastMac",
        "createdAt",
    ] {
        assert!(b.get(key).is_some(), "{key} in {b}");
    }
    // Update: partial, null clears, audit keeps old -> new.
    let u = c
        .put(
            &format!("/api/customers/{id}"),
            &t,
            json!({"name": "John B. Doe", "email": null, "password": "Other-Lamp-43"}),
        )
        .await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.body["name"], "John B. Doe");
    assert!(u.body["email"].is_null());
    assert_eq!(u.body["phone"], "+254700000000");
    let audit = c.get(&format!("/api/customers/{id}/audit"), &t).await;
    assert_eq!(audit.body["total"], 2);
    let update = &audit.body["events"][0];
    assert_eq!(update["action"], "update");
    assert_eq!(update["actor"]["name"], "admin");
    let changes = update["changes"].as_array().unwrap();
    let change = |f: &str| {
        changes
            .iter()
            .find(|c| c["field"] == f)
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(change("name")["old"], "Name of customer001");
    assert_eq!(change("name")["new"], "John B. Doe");
    assert_eq!(change("password")["new"], "changed");
    // Soft delete hides, restore brings back.
    let del = c.delete(&format!("/api/customers/{id}"), &t).await;
    assert_eq!(del.body, json!({"success": true}));
    assert_eq!(c.get(&format!("/api/customers/{id}"), &t).await.status, 404);
    assert_eq!(c.get("/api/customers", &t).await.body["total"], 0);
    assert_eq!(
        c.get(&format!("/api/customers/{id}/audit"), &t)
            .await
            .status,
        200
    );
    assert_eq!(
        c.call(
            reqwest::Method::POST,
            &format!("/api/customers/{id}/restore"),
            Some(&t),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(c.get(&format!("/api/customers/{id}"), &t).await.status, 200);
    assert_eq!(c.get("/api/customers", &t).await.body["total"], 1);
    // Customer passwords are stored encrypted: not in the database file in clear.
    for file in ["central.sqlite3", "central.sqlite3-wal"] {
        let bytes = std::fs::read(c.data_dir().join(file)).unwrap_or_default();
        for plain in [&b"Zebra-Lamp-42"[..], b"Other-Lamp-43"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain),
                "{file} holds a clear password"
            );
        }
    }
}

#[tokio::test]
async fn every_validation_rule_answers_400_with_its_field() {
    let c = Central::start().await;
    let t = c.admin().await;
    let cases = [
        (json!({"username": ""}), "username"),
        (json!({"username": "john doe"}), "username"),
        (json!({"username": "a".repeat(65)}), "username"),
        (json!({"password": "short"}), "password"),
        (json!({"password": "password123"}), "password"),
        (
            json!({"password": "newuser01", "username": "newuser01"}),
            "password",
        ),
        (json!({"name": "  "}), "name"),
        (json!({"name": "a\nb"}), "name"),
        (json!({"email": "john@"}), "email"),
        (json!({"phone": "+12"}), "phone"),
        (json!({"latitude": 91}), "latitude"),
        (json!({"longitude": -181}), "longitude"),
        (json!({"location": "x".repeat(1001)}), "location"),
        (json!({"staticIp": "10.0.0.256"}), "staticIp"),
        (json!({"macBindings": ["00:11:22"]}), "macBindings"),
        (
            json!({"packageId": "0197a3c0-0000-7000-8000-000000000000"}),
            "packageId",
        ),
        (
            json!({"nasId": "0197a3c0-0000-7000-8000-000000000000"}),
            "nasId",
        ),
    ];
    for (extra, field) in cases {
        let r = c.customer(&t, "newuser01", extra.clone()).await;
        assert_eq!(r.status, 400, "{extra} -> {}", r.body);
        assert_eq!(r.error_field(), Some(field), "{extra} -> {}", r.body);
        assert_eq!(r.error_code(), "validation_failed");
    }
    let missing = c
        .post(
            "/api/customers",
            &t,
            json!({"password": "Zebra-Lamp-42", "name": "x"}),
        )
        .await;
    assert_eq!(
        (missing.status, missing.error_field()),
        (400, Some("username"))
    );
    let wrong_type = c
        .customer(&t, "newuser01", json!({"connectionType": "FIBRE"}))
        .await;
    assert_eq!(wrong_type.status, 400);
    assert!(
        wrong_type.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("connection type")
    );
    let unknown = c.customer(&t, "newuser01", json!({"colour": "red"})).await;
    assert_eq!(unknown.status, 400);
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    // Text is stored as entered, and served as JSON only.
    let html = c
        .customer(
            &t,
            "newuser01",
            json!({"name": "<script>alert(1)</script>"}),
        )
        .await;
    assert_eq!(html.status, 201);
    assert_eq!(html.body["name"], "<script>alert(1)</script>");
    assert_eq!(
        html.headers.get("content-type").unwrap(),
        "application/json"
    );
}

#[tokio::test]
async fn duplicate_usernames_conflict_only_within_a_tenant() {
    let c = Central::start().await;
    let a = c.admin().await;
    assert_eq!(c.customer(&a, "alice", json!({})).await.status, 201);
    let dup = c.customer(&a, "alice", json!({})).await;
    assert_eq!((dup.status, dup.error_field()), (409, Some("username")));
    let bob = c.customer(&a, "bob", json!({})).await.id();
    assert_eq!(
        c.put(
            &format!("/api/customers/{bob}"),
            &a,
            json!({"username": "alice"})
        )
        .await
        .status,
        409
    );
    c.add_tenant("other", "boss");
    let b = c
        .login("other", "boss", super::harness::ADMIN_PASSWORD)
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    // Other tenant: same username is fine; phone without country code is refused (no default).
    assert_eq!(c.customer(&b, "alice", json!({})).await.status, 201);
    let phone = c
        .customer(&b, "carol", json!({"phone": "0700000000"}))
        .await;
    assert_eq!((phone.status, phone.error_field()), (400, Some("phone")));
}

#[tokio::test]
async fn another_tenants_customers_do_not_exist() {
    let c = Central::start().await;
    let a = c.admin().await;
    let id = c.customer(&a, "alice", json!({})).await.id();
    c.add_tenant("other", "boss");
    let b = c
        .login("other", "boss", super::harness::ADMIN_PASSWORD)
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/api/customers/{id}");
    for path in ["", "/live-status", "/sessions", "/payments", "/audit"] {
        let r = c.get(&format!("{base}{path}"), &b).await;
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_code(), "not_found");
    }
    assert_eq!(c.put(&base, &b, json!({"name": "x"})).await.status, 404);
    assert_eq!(c.delete(&base, &b).await.status, 404);
    assert_eq!(
        c.post(&format!("{base}/recharge"), &b, json!({"amount": 1}))
            .await
            .status,
        404
    );
    for action in ["suspend", "activate"] {
        assert_eq!(
            c.put_empty(&format!("{base}/{action}"), &b).await.status,
            404
        );
    }
    assert_eq!(
        c.put(&format!("{base}/expiry"), &b, json!({"expiresAt": null}))
            .await
            .status,
        404
    );
    for action in ["restore", "anonymize"] {
        assert_eq!(
            c.call(
                reqwest::Method::POST,
                &format!("{base}/{action}"),
                Some(&b),
                None
            )
            .await
            .status,
            404
        );
    }
    let list = c.get("/api/customers?search=alice", &b).await;
    assert_eq!(list.body["total"], 0);
    assert_eq!(c.get("/api/customers/not-a-uuid", &a).await.status, 404);
}

#[tokio::test]
async fn malformed_json_is_400_and_big_bodies_are_413() {
    let c = Central::start().await;
    let t = c.admin().await;
    let r = c
        .call_raw("/api/customers", &t, b"{\"username\": ".to_vec())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_json");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1")
    );
    let r = c.call_raw("/api/customers", &t, b"[1,2]".to_vec()).await;
    assert_eq!(r.status, 400);
    let r = c.call_raw("/api/customers", &t, Vec::new()).await;
    assert_eq!(r.status, 400);
    let mut big = b"{\"name\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 10));
    big.extend(b"\"}");
    let r = c.call_raw("/api/customers", &t, big).await;
    assert_eq!(r.status, 413);
    assert_eq!(r.error_code(), "payload_too_large");
}

#[tokio::test]
async fn customer_creation_is_rate_limited_per_tenant() {
    let c = Central::start_with(&["--customer-create-rate", "3"]).await;
    let t = c.admin().await;
    for name in ["a1", "a2", "a3"] {
        assert_eq!(c.customer(&t, name, json!({})).await.status, 201);
    }
    let r = c.customer(&t, "a4", json!({})).await;
    assert_eq!(r.status, 429);
    let retry: u64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "{retry}");
    // Another tenant has its own budget.
    c.add_tenant("other", "boss");
    let b = c
        .login("other", "boss", super::harness::ADMIN_PASSWORD)
        .await
        .body["token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(c.customer(&b, "a1", json!({})).await.status, 201);
}
