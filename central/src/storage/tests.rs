//! Storage tests on a real SQLite file: replicated records and their stamps, maintained
//! counts against brute force at several instants, atomicity of change + audit, and group
//! commit under concurrency.

use super::*;
use crate::storage::customer_row::CustomerPatch;
use chrono::Duration;
use easyisp_protocol::{ConnectionType, CustomerStatus};

fn new_customer(username: &str) -> NewCustomer {
    NewCustomer {
        phone: Some("+254700000001".into()),
        ..test_support::new_customer(username, &format!("Name {username}"))
    }
}

use test_support::open_with_tenant as open;

/// Creates the customer "alice" and returns it with its replicated record.
async fn alice(
    storage: &Storage,
    tenant: Uuid,
) -> (
    easyisp_protocol::customer::CustomerDetail,
    easyisp_protocol::CustomerRecord,
) {
    let created = storage
        .create_customer(tenant, system_actor("test"), new_customer("alice"))
        .await
        .unwrap();
    let record = storage
        .load_customer_record(tenant, created.id)
        .await
        .unwrap();
    (created, record)
}

/// Renames a customer and returns its replicated record afterwards.
async fn renamed(
    storage: &Storage,
    tenant: Uuid,
    id: Uuid,
    name: &str,
) -> easyisp_protocol::CustomerRecord {
    let patch = CustomerPatch {
        name: Some(name.into()),
        ..CustomerPatch::default()
    };
    storage
        .update_customer(tenant, system_actor("test"), id, patch)
        .await
        .unwrap();
    storage.load_customer_record(tenant, id).await.unwrap()
}

#[tokio::test]
async fn customer_records_carry_every_field_with_stamps_and_the_password() {
    let (_dir, storage, tenant) = open().await;
    let (created, before) = alice(&storage, tenant).await;
    assert_eq!(before.username(), "alice");
    assert_eq!(before.password_secret().unwrap().expose(), "Zebra-Lamp-42");
    assert!(before.name.is_some() && before.deleted_at.is_some() && before.tags.is_some());
    let after = renamed(&storage, tenant, created.id, "Alice B").await;
    let name_stamp = |r: &easyisp_protocol::CustomerRecord| r.name.as_ref().unwrap().stamp;
    assert!(
        name_stamp(&after) > name_stamp(&before),
        "a changed field gets a newer stamp"
    );
    assert_eq!(
        after.username.as_ref().unwrap().stamp,
        before.username.as_ref().unwrap().stamp
    );
    assert!(format!("{after:?}").contains("[redacted]") && !format!("{after:?}").contains("Zebra"));
}

#[tokio::test]
async fn a_customer_with_stamps_stored_before_migration_8_reads_and_is_rewritten_compact() {
    let (dir, storage, tenant) = open().await;
    let (created, before) = alice(&storage, tenant).await;
    // Store the stamps in the JSON form rows of older versions have.
    let column = |storage: &Storage| {
        let storage = storage.clone();
        async move {
            storage
                .read(move |conn| {
                    Ok(conn.query_row(
                        "SELECT stamps FROM customers WHERE id = ?1",
                        [created.id.to_string()],
                        |r| r.get::<_, String>(0),
                    )?)
                })
                .await
                .unwrap()
        }
    };
    let compact = column(&storage).await;
    assert!(compact.starts_with("2;"), "{compact}");
    let json = stamps::Stamps::parse_stored(&compact, &customer_row::STAMPED_FIELDS)
        .unwrap()
        .to_json();
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute(
        "UPDATE customers SET stamps = ?2 WHERE id = ?1",
        rusqlite::params![created.id.to_string(), json],
    )
    .unwrap();
    drop(conn);

    let read = storage
        .load_customer_record(tenant, created.id)
        .await
        .unwrap();
    assert_eq!(read, before);
    let after = renamed(&storage, tenant, created.id, "Alice B").await;
    assert!(column(&storage).await.starts_with("2;"));
    assert_eq!(after.username, before.username);
    assert!(after.name.as_ref().unwrap().stamp > before.name.as_ref().unwrap().stamp);
}

#[tokio::test]
async fn package_records_round_trip() {
    let (_dir, storage, tenant) = open().await;
    let input = PackageInput {
        name: "Home".into(),
        price: easyisp_protocol::Money::from_minor(200_000),
        download_speed: easyisp_protocol::Speed::from_mbps(10),
        upload_speed: easyisp_protocol::Speed::from_mbps(5),
        validity_days: 30,
        data_limit: None,
        session_time_limit: None,
        burst: None,
    };
    let view = storage
        .create_package(tenant, system_actor("test"), input)
        .await
        .unwrap();
    let record = storage.load_package_record(tenant, view.id).await.unwrap();
    assert_eq!(record.package_name(), "Home");
    assert_eq!(record.shaping().download.kbps(), 10_000);
    assert!(record.max_stamp().is_some());
}

#[tokio::test]
async fn maintained_totals_match_brute_force_at_every_instant() {
    let (_dir, storage, tenant) = open().await;
    let actor = system_actor("test");
    let now = Utc::now();
    let mut expiries = Vec::new();
    for i in 0..30i64 {
        let mut c = new_customer(&format!("c{i}"));
        c.expires_at = match i % 4 {
            0 => None,
            1 => Some(now - Duration::days(3) + Duration::hours(i)),
            2 => Some(now + Duration::minutes(i * 7)),
            _ => Some(now + Duration::days(i)),
        };
        c.disabled = i % 9 == 0;
        c.connection_type = if i % 3 == 0 {
            ConnectionType::Hotspot
        } else {
            ConnectionType::Pppoe
        };
        let d = storage
            .create_customer(tenant, actor.clone(), c)
            .await
            .unwrap();
        if i % 7 == 0 {
            storage
                .change_customer(tenant, actor.clone(), d.id, "suspend", |p| {
                    p.suspended = Some(true)
                })
                .await
                .unwrap();
        }
        if i == 11 {
            storage
                .delete_customer(tenant, actor.clone(), d.id)
                .await
                .unwrap();
        }
        expiries.push(d.id);
    }
    for at in [
        now,
        now + Duration::minutes(90),
        now + Duration::days(2),
        now + Duration::days(40),
    ] {
        let all = storage
            .list_customers(
                tenant,
                CustomerFilter {
                    page: 1,
                    page_size: 100,
                    ..CustomerFilter::default()
                },
                at,
            )
            .await
            .unwrap();
        for status in CustomerStatus::ALL {
            for ct in [None, Some(ConnectionType::Hotspot)] {
                let filter = CustomerFilter {
                    status: Some(status),
                    connection_type: ct,
                    page: 1,
                    page_size: 100,
                    ..CustomerFilter::default()
                };
                let page = storage.list_customers(tenant, filter, at).await.unwrap();
                let brute = all
                    .customers
                    .iter()
                    .filter(|c| c.status == status && ct.is_none_or(|t| c.connection_type == t))
                    .count() as u64;
                assert_eq!(page.total, brute, "{status} {ct:?} at {at}");
                assert_eq!(
                    page.customers.len() as u64,
                    brute,
                    "{status} {ct:?} at {at}"
                );
            }
        }
        assert_eq!(all.total, 29);
    }
}

#[tokio::test]
async fn a_failed_change_leaves_neither_row_nor_audit_and_others_in_the_group_commit() {
    let (dir, storage, tenant) = open().await;
    let actor = system_actor("test");
    let mut handles = Vec::new();
    for i in 0..40 {
        let (storage, actor) = (storage.clone(), actor.clone());
        // Every fourth is a duplicate of an earlier username and must fail alone.
        let name = if i % 4 == 3 {
            format!("u{}", i - 1)
        } else {
            format!("u{i}")
        };
        handles.push(tokio::spawn(async move {
            storage
                .create_customer(tenant, actor, new_customer(&name))
                .await
        }));
    }
    let mut ok = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(StorageError::Conflict {
                field: Some("username"),
                ..
            }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert!(ok >= 30, "{ok}");
    let (customers, events): (i64, i64) = storage
        .read(move |conn| {
            Ok(conn.query_row(
                "SELECT (SELECT COUNT(*) FROM customers WHERE tenant_id = ?1),
                        (SELECT COUNT(*) FROM audit WHERE tenant_id = ?1 AND entity = 'customer')",
                [tenant.to_string()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap();
    assert_eq!((customers, events), (ok, ok));
    // The search index holds exactly the customers that committed.
    let conn = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    conn.execute(
        "INSERT INTO customers_fts (customers_fts, rank) VALUES ('integrity-check', 1)",
        [],
    )
    .unwrap();
    let indexed: i64 = storage
        .read(|conn| {
            Ok(conn.query_row(
                "SELECT COUNT(*) FROM customers_fts WHERE customers_fts MATCH '\"Name u\"'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
        .unwrap();
    assert_eq!(indexed, ok);
}
