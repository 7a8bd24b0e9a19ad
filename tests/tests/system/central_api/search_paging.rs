//! The list: filters, search (username, name, phone; substring, case-insensitive), page and
//! keyset cursor, maintained totals, embedded package and router.

use super::harness::Central;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test]
async fn filters_search_and_both_kinds_of_paging() {
    let c = Central::start_with(&["--customer-create-rate", "0"]).await;
    let t = c.admin().await;
    let (package, router) = c.package_and_router(&t).await;
    for i in 0..25 {
        let ct = if i % 5 == 0 { "HOTSPOT" } else { "PPPOE" };
        let extra = if i % 2 == 0 {
            json!({"connectionType": ct, "packageId": package, "nasId": router})
        } else {
            json!({"connectionType": ct})
        };
        let extra = if i == 7 {
            json!({"name": "Wanjiku Mwangi", "phone": "+254722333444"})
        } else {
            extra
        };
        let r = c.customer(&t, &format!("user{i:02}"), extra).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let all = c.get("/api/customers", &t).await;
    assert_eq!(all.body["total"], 25);
    assert_eq!(all.body["page"], 1);
    assert_eq!(all.body["pageSize"], 20);
    let rows = all.body["customers"].as_array().unwrap();
    assert_eq!(rows.len(), 20);
    assert_eq!(rows[0]["username"], "user24", "newest first");
    let with_package = rows.iter().find(|r| r["username"] == "user24").unwrap();
    assert_eq!(
        with_package["package"],
        json!({"id": package, "name": "10 Mbps Home", "price": 2000})
    );
    assert_eq!(with_package["router"]["name"], "Router 1");
    let without = rows.iter().find(|r| r["username"] == "user23").unwrap();
    assert!(without["package"].is_null() && without["router"].is_null());
    // page 2 and the keyset cursor agree.
    let page2 = c.get("/api/customers?page=2", &t).await;
    assert_eq!(page2.body["customers"].as_array().unwrap().len(), 5);
    let cursor = all.body["nextCursor"].as_str().unwrap();
    let next = c.get(&format!("/api/customers?cursor={cursor}"), &t).await;
    assert_eq!(next.body["customers"], page2.body["customers"]);
    assert!(next.body["nextCursor"].is_null());
    // Walk everything 7 at a time by cursor: every customer once.
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let path = match &cursor {
            Some(c) => format!("/api/customers?pageSize=7&cursor={c}"),
            None => "/api/customers?pageSize=7".into(),
        };
        let r = c.get(&path, &t).await;
        for row in r.body["customers"].as_array().unwrap() {
            assert!(seen.insert(row["id"].as_str().unwrap().to_string()));
        }
        match r.body["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    assert_eq!(
        c.get("/api/customers?pageSize=1000", &t).await.body["pageSize"],
        100
    );
    // Filters and their totals.
    assert_eq!(
        c.get("/api/customers?connectionType=hotspot", &t)
            .await
            .body["total"],
        5
    );
    assert_eq!(
        c.get(&format!("/api/customers?packageId={package}"), &t)
            .await
            .body["total"],
        13
    );
    let combo = c
        .get(
            &format!("/api/customers?packageId={package}&connectionType=HOTSPOT&status=active"),
            &t,
        )
        .await;
    assert_eq!(combo.body["total"], 3);
    assert_eq!(combo.body["customers"].as_array().unwrap().len(), 3);
    // Search: name substring any case, phone digits, username.
    for (term, expected) in [
        ("anjiKU", 1),
        ("722333", 1),
        ("user1", 10),
        ("zzzz", 0),
        ("r0", 10),
    ] {
        let r = c.get(&format!("/api/customers?search={term}"), &t).await;
        assert_eq!(r.body["total"], expected, "{term}: {}", r.body);
        assert_eq!(
            r.body["customers"].as_array().unwrap().len(),
            expected.min(20) as usize,
            "{term}"
        );
        assert_eq!(r.body["totalExact"], true);
    }
    let searched = c.get("/api/customers?search=user&pageSize=10", &t).await;
    assert_eq!(searched.body["customers"].as_array().unwrap().len(), 10);
    let more = c
        .get(
            &format!(
                "/api/customers?search=user&pageSize=10&cursor={}",
                searched.body["nextCursor"].as_str().unwrap()
            ),
            &t,
        )
        .await;
    assert_eq!(more.body["customers"][0]["username"], "user14");
    // Bad filter values name their parameter.
    for (query, field) in [
        ("status=gone", "status"),
        ("connectionType=fibre", "connectionType"),
        ("packageId=x", "packageId"),
        ("cursor=abc", "cursor"),
        ("page=-1", "page"),
    ] {
        let r = c.get(&format!("/api/customers?{query}"), &t).await;
        assert_eq!((r.status, r.error_field()), (400, Some(field)), "{query}");
    }
    // Deleted customers leave lists, totals and searches.
    let victim = all.body["customers"][0]["id"].as_str().unwrap().to_string();
    c.delete(&format!("/api/customers/{victim}"), &t).await;
    assert_eq!(c.get("/api/customers", &t).await.body["total"], 24);
    assert_eq!(
        c.get("/api/customers?search=user24", &t).await.body["total"],
        0
    );
}
