//! Customer actions: recharge (idempotent), payments, expiry (status derived at once),
//! package, suspend/activate, live-status and sessions, anonymize and retention.

use super::harness::Central;
use reqwest::Method;
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test]
async fn recharge_is_idempotent_and_payments_sum_the_ledger() {
    let c = Central::start().await;
    let t = c.admin().await;
    let id = c.customer(&t, "alice", json!({})).await.id();
    let path = format!("/api/customers/{id}/recharge");
    let r = c
        .post(
            &path,
            &t,
            json!({"amount": 500, "description": "Wallet top-up"}),
        )
        .await;
    assert_eq!(r.body, json!({"success": true, "newBalance": 500}));
    let r = c.post(&path, &t, json!({"amount": 250.5, "method": "mpesa", "transactionId": "RCB123456", "idempotencyKey": "k-1"})).await;
    assert_eq!(r.body["newBalance"].to_string(), "750.50");
    let again = c
        .post(&path, &t, json!({"amount": 250.5, "idempotencyKey": "k-1"}))
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["newBalance"].to_string(), "750.50");
    for bad in [
        json!({"amount": 0}),
        json!({"amount": -5}),
        json!({"amount": 1.001}),
        json!({"amount": 1e12}),
        json!({}),
    ] {
        let r = c.post(&path, &t, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}");
    }
    let p = c.get(&format!("/api/customers/{id}/payments"), &t).await;
    assert_eq!(p.body["total"], 2);
    assert_eq!(p.body["totalPaid"].to_string(), "750.50");
    let newest = &p.body["payments"][0];
    assert_eq!(newest["method"], "MPESA");
    assert_eq!(newest["status"], "COMPLETED");
    assert_eq!(newest["transactionId"], "RCB123456");
    assert_eq!(p.body["payments"][1]["description"], "Wallet top-up");
    let d = c.get(&format!("/api/customers/{id}"), &t).await;
    assert_eq!(d.body["walletBalance"].to_string(), "750.50");
    let list = c.get("/api/customers", &t).await;
    assert_eq!(
        list.body["customers"][0]["walletBalance"].to_string(),
        "750.50"
    );
    let audit = c.get(&format!("/api/customers/{id}/audit"), &t).await;
    assert_eq!(audit.body["events"][0]["action"], "recharge");
    assert_eq!(
        audit.body["total"], 3,
        "create + 2 recharges; the replay writes nothing"
    );
}

#[tokio::test]
async fn expiry_suspend_activate_and_package_change_derive_status_at_once() {
    let c = Central::start().await;
    let t = c.admin().await;
    let (package, _) = c.package_and_router(&t).await;
    let p2 = c.post("/api/packages", &t, json!({"name": "20 Mbps Business", "price": 4000, "downloadSpeed": 20, "uploadSpeed": 20, "validityDays": 30})).await.id();
    let id = c
        .customer(&t, "alice", json!({"packageId": package}))
        .await
        .id();
    let other = c.customer(&t, "bob", json!({})).await.id();
    let base = format!("/api/customers/{id}");
    let count = |status: &'static str| {
        let c = &c;
        let t = &t;
        async move {
            c.get(&format!("/api/customers?status={status}"), t)
                .await
                .body["total"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!((count("active").await, count("expired").await), (2, 0));
    let r = c
        .put(
            &format!("{base}/expiry"),
            &t,
            json!({"expiresAt": "2020-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(
        r.body,
        json!({"success": true, "expiresAt": "2020-01-01T00:00:00Z"})
    );
    assert_eq!(c.get(&base, &t).await.body["status"], "expired");
    assert_eq!((count("active").await, count("expired").await), (1, 1));
    let expired = c.get("/api/customers?status=EXPIRED", &t).await;
    assert_eq!(expired.body["customers"][0]["id"], id.as_str());
    let r = c.put_empty(&format!("{base}/suspend"), &t).await;
    assert_eq!(r.body, json!({"success": true, "status": "suspended"}));
    assert_eq!((count("suspended").await, count("expired").await), (1, 0));
    let r = c.put_empty(&format!("{base}/activate"), &t).await;
    assert_eq!(
        r.body["status"], "expired",
        "activation does not hide an expiry"
    );
    c.put(
        &format!("{base}/expiry"),
        &t,
        json!({"expiresAt": "2099-01-01T00:00:00Z"}),
    )
    .await;
    assert_eq!(
        c.put_empty(&format!("{base}/activate"), &t).await.body["status"],
        "active"
    );
    let r = c
        .put(&format!("{base}/package"), &t, json!({"packageId": p2}))
        .await;
    assert_eq!(r.body["success"], true);
    assert_eq!(
        r.body["package"],
        json!({"id": p2, "name": "20 Mbps Business"})
    );
    assert_eq!(
        c.get(&format!("/api/customers?packageId={p2}"), &t)
            .await
            .body["total"],
        1
    );
    assert_eq!(
        c.get(&format!("/api/customers?packageId={package}"), &t)
            .await
            .body["total"],
        0
    );
    let bad = c
        .put(&format!("{base}/package"), &t, json!({"packageId": other}))
        .await;
    assert_eq!((bad.status, bad.error_field()), (400, Some("packageId")));
    let disabled = c
        .put(
            &format!("/api/customers/{other}"),
            &t,
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(disabled.body["status"], "disabled");
    assert_eq!(count("disabled").await, 1);
    // A customer expiring in a moment becomes `expired` in lists without any job running.
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    c.customer(&t, "carol", json!({"expiresAt": soon})).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = c
            .get("/api/customers?status=expired&search=carol", &t)
            .await;
        if r.body["total"] == 1 {
            assert_eq!(r.body["customers"][0]["status"], "expired");
            break;
        }
        assert!(Instant::now() < deadline, "carol never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let audit = c.get(&format!("{base}/audit?pageSize=100"), &t).await;
    let actions: Vec<&str> = audit.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in ["create", "expiry", "suspend", "activate", "package"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

fn insert_session(
    c: &Central,
    tenant: &str,
    customer: &str,
    stop: Option<i64>,
    start: i64,
    id: &str,
) {
    let db = rusqlite::Connection::open(c.data_dir().join("central.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute(
        "INSERT INTO sessions (id, tenant_id, router_id, customer_id, username, kind, session_id, start_time,
            stop_time, input_octets, output_octets, framed_ip, mac_address, terminate_cause, updated_at)
         VALUES (?1, ?2, ?3, ?4, 'alice', 'PPPOE', ?5, ?6, ?7, 1048576000, 5242880000, '10.5.50.100',
            '00:11:22:33:44:55', 'User-Request', ?8)",
        rusqlite::params![id, tenant, uuid::Uuid::now_v7().to_string(), customer, format!("RADIUS-{id}"), start, stop, stop.unwrap_or(start)],
    )
    .unwrap();
}

#[tokio::test]
async fn live_status_and_sessions_come_from_the_sessions_table() {
    let c = Central::start().await;
    let t = c.admin().await;
    let id = c.customer(&t, "alice", json!({})).await.id();
    let r = c.get(&format!("/api/customers/{id}/live-status"), &t).await;
    assert_eq!(
        r.body,
        json!({"isOnline": false, "session": null, "lastSeen": null})
    );
    let now = chrono::Utc::now().timestamp_millis();
    insert_session(
        &c,
        &c.tenant,
        &id,
        Some(now - 300_000),
        now - 300_000 - 16_200_000,
        &uuid::Uuid::now_v7().to_string(),
    );
    let r = c.get(&format!("/api/customers/{id}/live-status"), &t).await;
    assert_eq!(r.body["isOnline"], false);
    assert_eq!(r.body["lastSeen"], "5 minutes ago");
    let s = c.get(&format!("/api/customers/{id}/sessions"), &t).await;
    assert_eq!(s.body["total"], 1);
    assert_eq!(s.body["page"], 1);
    assert_eq!(s.body["pageSize"], 20);
    let first = &s.body["sessions"][0];
    assert_eq!(first["duration"], "4h 30m");
    assert_eq!(first["dataUsed"], "6.29 GB");
    assert_eq!(first["terminateCause"], "User-Request");
    let active = uuid::Uuid::now_v7().to_string();
    insert_session(&c, &c.tenant, &id, None, now - 3_600_000, &active);
    let r = c.get(&format!("/api/customers/{id}/live-status"), &t).await;
    assert_eq!(r.body["isOnline"], true);
    assert_eq!(r.body["session"]["id"], active.as_str());
    assert_eq!(r.body["session"]["framedIp"], "10.5.50.100");
    assert_eq!(r.body["session"]["inputOctets"], 1048576000u64);
    let paged = c
        .get(
            &format!("/api/customers/{id}/sessions?page=2&pageSize=1"),
            &t,
        )
        .await;
    assert_eq!(paged.body["total"], 2);
    assert_eq!(paged.body["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn anonymize_erases_personal_data_but_keeps_the_ledger() {
    let c = Central::start().await;
    let t = c.admin().await;
    let id = c
        .customer(
            &t,
            "alice",
            json!({"email": "alice@example.com", "phone": "+254711111111", "location": "Home"}),
        )
        .await
        .id();
    c.post(
        &format!("/api/customers/{id}/recharge"),
        &t,
        json!({"amount": 100}),
    )
    .await;
    let r = c
        .call(
            Method::POST,
            &format!("/api/customers/{id}/anonymize"),
            Some(&t),
            None,
        )
        .await;
    assert_eq!(r.body, json!({"success": true}));
    assert_eq!(c.get(&format!("/api/customers/{id}"), &t).await.status, 404);
    let audit = c.get(&format!("/api/customers/{id}/audit"), &t).await;
    let text = audit.body.to_string();
    for personal in [
        "alice@example.com",
        "+254711111111",
        "Home\"",
        "Name of alice",
    ] {
        assert!(!text.contains(personal), "{personal} left in {text}");
    }
    assert_eq!(audit.body["events"][0]["action"], "anonymize");
    assert_eq!(
        c.call(
            Method::POST,
            &format!("/api/customers/{id}/restore"),
            Some(&t),
            None
        )
        .await
        .status,
        409
    );
    // The username is free again, and the ledger keeps the entry under the old id.
    assert_eq!(c.customer(&t, "alice", json!({})).await.status, 201);
    let db = rusqlite::Connection::open(c.data_dir().join("central.sqlite3")).unwrap();
    let entries: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM ledger WHERE customer_id = ?1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(entries, 1);
}

#[tokio::test]
async fn retention_anonymises_deleted_customers_after_the_configured_days() {
    let c = Central::start_with(&["--retention-days", "0", "--retention-interval-secs", "1"]).await;
    let t = c.admin().await;
    let id = c.customer(&t, "alice", json!({})).await.id();
    let kept = c.customer(&t, "bob", json!({})).await.id();
    c.delete(&format!("/api/customers/{id}"), &t).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let audit = c.get(&format!("/api/customers/{id}/audit"), &t).await;
        if audit.body["events"][0]["action"] == "anonymize" {
            assert_eq!(audit.body["events"][0]["actor"]["kind"], "system");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention never ran: {}",
            audit.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        c.get(&format!("/api/customers/{kept}"), &t).await.body["name"],
        "Name of bob"
    );
}
