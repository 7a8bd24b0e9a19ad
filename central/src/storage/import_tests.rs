//! Bulk import and search tests: an imported customer is indistinguishable from one the API
//! created (row, stamps, counts, search, audit), a failed batch writes nothing, and search
//! pages and totals stay exact up to the cap with the index fed per batch.

use super::customer_row::STAMPED_FIELDS;
use super::*;
use chrono::Duration;
use easyisp_protocol::{ConnectionType, CustomerStatus, Secret};

fn input(username: &str, name: &str, package: Option<Uuid>) -> NewCustomer {
    NewCustomer {
        username: username.into(),
        password: Secret::new("Zebra-Lamp-42".into()),
        name: name.into(),
        email: Some("someone@example.com".into()),
        phone: Some("+254712345678".into()),
        connection_type: ConnectionType::Hotspot,
        package_id: package,
        router_id: None,
        expires_at: None,
        location: Some("Nairobi".into()),
        latitude: None,
        longitude: None,
        apartment_number: Some("A12".into()),
        house_number: None,
        disabled: false,
        auto_renew: true,
        static_ip: None,
        mac_bindings: vec!["AA:BB:CC:DD:EE:FF".into()],
        tags: vec!["vip".into()],
    }
}

async fn open() -> (tempfile::TempDir, Storage, Uuid, Uuid) {
    let (dir, storage, tenant) = test_support::open_with_tenant().await;
    let package = PackageInput {
        name: "Home".into(),
        price: easyisp_protocol::Money::from_minor(200_000),
        download_speed: easyisp_protocol::Speed::from_mbps(10),
        upload_speed: easyisp_protocol::Speed::from_mbps(5),
        validity_days: 30,
        data_limit: None,
        session_time_limit: None,
        burst: None,
    };
    let package = storage
        .create_package(tenant, system_actor("test"), package)
        .await
        .unwrap()
        .id;
    (dir, storage, tenant, package)
}

fn search(term: &str) -> CustomerFilter {
    CustomerFilter {
        search: Some(term.into()),
        page: 1,
        page_size: 20,
        ..CustomerFilter::default()
    }
}

/// The stored columns of a customer, by name, for comparing two rows.
async fn stored_columns(storage: &Storage, id: Uuid) -> Vec<(String, rusqlite::types::Value)> {
    storage
        .read(move |conn| {
            let mut stmt = conn.prepare("SELECT * FROM customers WHERE id = ?1")?;
            let names: Vec<String> = stmt.column_names().map(|n| n.to_string()).collect();
            let values = stmt.query_row([id.to_string()], |r| {
                (0..names.len())
                    .map(|i| r.get::<_, rusqlite::types::Value>(i))
                    .collect::<rusqlite::Result<Vec<_>>>()
            })?;
            Ok(names.into_iter().zip(values).collect())
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn an_imported_customer_is_indistinguishable_from_one_created_by_the_api() {
    let (dir, storage, tenant, package) = open().await;
    let actor = system_actor("test");
    let api = storage
        .create_customer(
            tenant,
            actor.clone(),
            input("alice", "Alice Wanjiku", Some(package)),
        )
        .await
        .unwrap();
    let n = storage
        .import_customers(
            tenant,
            actor.clone(),
            vec![input("bob", "Alice Wanjiku", Some(package))],
        )
        .await
        .unwrap();
    assert_eq!(n, 1);
    let found = storage
        .list_customers(tenant, search("bob"), Utc::now())
        .await
        .unwrap();
    assert_eq!((found.total, found.total_exact), (1, true));
    let imported = storage
        .get_customer(tenant, found.customers[0].id, Utc::now())
        .await
        .unwrap();

    // Detail: equal but for id, username and the creation instant (and the default expiry
    // that follows from it).
    assert_eq!(
        imported.expires_at.unwrap() - imported.created_at,
        Duration::days(30)
    );
    let mut same = imported.clone();
    same.id = api.id;
    same.username = api.username.clone();
    same.created_at = api.created_at;
    same.expires_at = api.expires_at;
    assert_eq!(same, api);

    // Stored row: every column equal but those, the ciphertext (fresh nonce) and the stamp
    // values; the same fields are stamped, and the password decrypts the same.
    let (a, b) = (
        stored_columns(&storage, api.id).await,
        stored_columns(&storage, imported.id).await,
    );
    let differ = [
        "rowid",
        "id",
        "username",
        "password_enc",
        "expires_at",
        "created_at",
        "stamps",
    ];
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        if !differ.contains(&name.as_str()) {
            assert_eq!(x, y, "column {name}");
        }
    }
    let (ra, rb) = (
        storage.load_customer_record(tenant, api.id).await.unwrap(),
        storage
            .load_customer_record(tenant, imported.id)
            .await
            .unwrap(),
    );
    assert_eq!(rb.password_secret().unwrap().expose(), "Zebra-Lamp-42");
    let stamped = |columns: &[(String, rusqlite::types::Value)]| -> Vec<String> {
        let text = match columns.iter().find(|(n, _)| n == "stamps") {
            Some((_, rusqlite::types::Value::Text(text))) => text.clone(),
            other => panic!("stamps column: {other:?}"),
        };
        let stamps = super::stamps::Stamps::parse_stored(&text, &STAMPED_FIELDS).unwrap();
        stamps.fields().map(str::to_string).collect()
    };
    assert_eq!(stamped(&a), stamped(&b));
    let mut every: Vec<String> = STAMPED_FIELDS.iter().map(|f| f.to_string()).collect();
    every.sort();
    assert_eq!(stamped(&b), every);
    assert!(
        rb.max_stamp() > ra.max_stamp(),
        "later writes carry later stamps"
    );

    // Search finds both by name and phone; counts include both.
    for term in ["Wanjiku", "712345"] {
        let page = storage
            .list_customers(tenant, search(term), Utc::now())
            .await
            .unwrap();
        assert_eq!((page.total, page.customers.len()), (2, 2), "{term}");
    }
    for (status, want) in [(None, 2), (Some(CustomerStatus::Active), 2)] {
        let filter = CustomerFilter {
            status,
            page: 1,
            page_size: 20,
            ..CustomerFilter::default()
        };
        let page = storage
            .list_customers(tenant, filter, Utc::now())
            .await
            .unwrap();
        assert_eq!(page.total, want);
    }

    // Audit: one create event each with the same changes, but for the differing values.
    let (ea, eb) = (
        storage.customer_audit(tenant, api.id, 1, 20).await.unwrap(),
        storage
            .customer_audit(tenant, imported.id, 1, 20)
            .await
            .unwrap(),
    );
    assert_eq!((ea.total, eb.total), (1, 1));
    let (ea, eb) = (&ea.events[0], &eb.events[0]);
    assert_eq!((eb.action.as_str(), &eb.actor), ("create", &ea.actor));
    assert_eq!(eb.at, imported.created_at);
    let fields = |e: &easyisp_protocol::audit::AuditEvent| -> Vec<String> {
        e.changes.iter().map(|c| c.field.clone()).collect()
    };
    assert_eq!(fields(ea), fields(eb));
    for (x, y) in ea.changes.iter().zip(&eb.changes) {
        if !["username", "expiresAt", "createdAt"].contains(&x.field.as_str()) {
            assert_eq!(x, y);
        }
    }
    assert!(!serde_json::to_string(eb).unwrap().contains("Zebra"));
    check_search_index(dir.path());
}

/// FTS5's own check that the index holds exactly the indexed columns of every row.
fn check_search_index(dir: &std::path::Path) {
    let conn = rusqlite::Connection::open(dir.join(DB_FILE)).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute(
        "INSERT INTO customers_fts(customers_fts, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .unwrap();
}

#[test]
fn a_new_row_is_stamped_in_the_order_the_import_uses() {
    let cipher = crate::secrets::Cipher::from_key(&[1u8; 32]);
    let row = customers::build_row(
        Utc::now(),
        &cipher,
        Uuid::now_v7(),
        input("a", "A", None),
        None,
    )
    .unwrap();
    let visited: Vec<&str> = row
        .changed_fields(None)
        .into_iter()
        .map(|(f, _)| f)
        .collect();
    assert_eq!(visited, STAMPED_FIELDS);
}

#[tokio::test]
async fn an_import_with_a_taken_username_writes_nothing() {
    let (dir, storage, tenant, package) = open().await;
    let actor = system_actor("test");
    storage
        .create_customer(
            tenant,
            actor.clone(),
            input("taken", "First", Some(package)),
        )
        .await
        .unwrap();
    let batch = vec![
        input("fresh", "Second", Some(package)),
        input("taken", "Third", Some(package)),
    ];
    let err = storage
        .import_customers(tenant, actor, batch)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::Conflict {
                field: Some("username"),
                ..
            }
        ),
        "{err}"
    );
    let all = storage
        .list_customers(tenant, search("o"), Utc::now())
        .await
        .unwrap();
    assert_eq!(all.total, 0);
    let everyone = CustomerFilter {
        page: 1,
        page_size: 20,
        ..CustomerFilter::default()
    };
    let page = storage
        .list_customers(tenant, everyone, Utc::now())
        .await
        .unwrap();
    assert_eq!((page.total, page.customers.len()), (1, 1));
    let events: i64 = storage
        .read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM audit WHERE entity = 'customer'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(events, 1);
    check_search_index(dir.path());
}

#[tokio::test]
async fn search_totals_are_exact_up_to_the_cap_and_cursors_walk_every_match() {
    let (dir, storage, tenant, _) = open().await;
    let actor = system_actor("test");
    let many: Vec<NewCustomer> = (0..SEARCH_TOTAL_CAP + 50)
        .map(|i| {
            let mut c = input(&format!("m{i:05}"), &format!("Common Zedonk {i}"), None);
            c.phone = Some(format!("+2547{i:08}"));
            c.disabled = i % 10 == 0;
            c
        })
        .collect();
    storage
        .import_customers(tenant, actor.clone(), many)
        .await
        .unwrap();
    let few: Vec<NewCustomer> = (0..45)
        .map(|i| input(&format!("f{i:03}"), &format!("Rare Quolto {i}"), None))
        .collect();
    storage
        .import_customers(tenant, actor.clone(), few)
        .await
        .unwrap();
    // One of the rare ones is deleted through the API, one renamed away from the term.
    let rare = storage
        .list_customers(tenant, search("Quolto"), Utc::now())
        .await
        .unwrap();
    assert_eq!((rare.total, rare.total_exact), (45, true));
    storage
        .delete_customer(tenant, actor.clone(), rare.customers[0].id)
        .await
        .unwrap();
    let patch = CustomerPatch {
        name: Some("Renamed".into()),
        ..CustomerPatch::default()
    };
    storage
        .update_customer(tenant, actor, rare.customers[1].id, patch)
        .await
        .unwrap();

    let common = storage
        .list_customers(tenant, search("zedonk"), Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (common.total, common.total_exact),
        (SEARCH_TOTAL_CAP, false)
    );
    let disabled = CustomerFilter {
        status: Some(CustomerStatus::Disabled),
        ..search("Zedonk")
    };
    let page = storage
        .list_customers(tenant, disabled, Utc::now())
        .await
        .unwrap();
    assert_eq!((page.total, page.total_exact), (105, true));
    assert!(
        page.customers
            .iter()
            .all(|c| c.status == CustomerStatus::Disabled)
    );

    // Walking the rare term by cursor sees each remaining match once, newest first.
    let mut seen = Vec::new();
    let mut filter = search("Quolto");
    loop {
        let page = storage
            .list_customers(tenant, filter.clone(), Utc::now())
            .await
            .unwrap();
        assert_eq!((page.total, page.total_exact), (43, true));
        seen.extend(page.customers.iter().map(|c| c.name.clone()));
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor.parse().unwrap()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..43).rev().map(|i| format!("Rare Quolto {i}")).collect();
    assert_eq!(seen, expected);
    // Page numbers reach the same rows.
    let second = CustomerFilter {
        page: 2,
        ..search("Quolto")
    };
    let page = storage
        .list_customers(tenant, second, Utc::now())
        .await
        .unwrap();
    assert_eq!(page.customers[0].name, "Rare Quolto 22");
    check_search_index(dir.path());
}
