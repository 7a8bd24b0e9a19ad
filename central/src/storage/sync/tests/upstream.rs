//! The upstream apply.

use super::*;

fn site_record(tenant: Uuid, id: Uuid) -> CustomerRecord {
    CustomerRecord::empty(id, tenant)
}

#[tokio::test]
async fn upstream_merges_customers_logs_site_edits_and_conflicts_without_echo() {
    let f = fixture().await;
    let router = f.synced_router("POP North").await;
    let carol = f.customer("carol", Some(router)).await;
    let rows_before = f.outbox(router).await.len();
    let mut edit = site_record(f.tenant, carol);
    edit.last_ip = Some(Lww::new(Some("100.64.0.7".into()), site_stamp(0)));
    edit.suspended = Some(Lww::new(true, site_stamp(0)));
    // An old write (stamped before central's) loses and is logged as a conflict.
    edit.name = Some(Lww::new("Old Name".into(), Hlc::new(1, 0, NodeId(0xA6E7))));
    let outcome = f
        .apply(
            router,
            1,
            vec![change(1, ChangeBody::Customer(Box::new(edit)))],
        )
        .await;
    assert!(
        matches!(&outcome, UpOutcome::Applied { acked_through: 1, applied: 1, rejected, .. } if rejected.is_empty()),
        "{outcome:?}"
    );
    let detail = f
        .storage
        .get_customer(f.tenant, carol, Utc::now())
        .await
        .unwrap();
    assert_eq!(detail.last_ip.as_deref(), Some("100.64.0.7"));
    assert_eq!(detail.name, "Name carol");
    assert_eq!(detail.status, easyisp_protocol::CustomerStatus::Suspended);
    let audit = f
        .storage
        .customer_audit(f.tenant, carol, 1, 50)
        .await
        .unwrap();
    let update = audit
        .events
        .iter()
        .find(|e| e.action == "update")
        .expect("site edit audited");
    assert_eq!(update.actor, agent_actor(router, "POP North"));
    assert!(update.changes.iter().any(|c| c.field == "lastIp"));
    let conflict = audit
        .events
        .iter()
        .find(|e| e.action == "sync-conflict")
        .expect("conflict audited");
    assert_eq!(conflict.changes[0].field, "name");
    assert_eq!(conflict.changes[0].old, "Old Name");
    assert_eq!(conflict.changes[0].new, "Name carol");
    // Counts moved with the suspension; nothing was echoed to the agent.
    let suspended: i64 = f
        .storage
        .read({
            let tenant = f.tenant;
            move |conn| {
                Ok(conn.query_row(
                    "SELECT COALESCE(SUM(n), 0) FROM customer_counts WHERE tenant_id = ?1 AND state = 1",
                    [tenant.to_string()],
                    |r| r.get(0),
                )?)
            }
        })
        .await
        .unwrap();
    assert_eq!(suspended, 1);
    assert_eq!(f.outbox(router).await.len(), rows_before);
    // A site password change is stored encrypted and audited as "changed".
    let mut secret = site_record(f.tenant, carol);
    secret.password = Some(Lww::new(
        easyisp_protocol::customer::SyncedSecret::new("New-Secret-99"),
        site_stamp(1),
    ));
    f.apply(
        router,
        2,
        vec![change(2, ChangeBody::Customer(Box::new(secret)))],
    )
    .await;
    let record = f
        .storage
        .load_customer_record(f.tenant, carol)
        .await
        .unwrap();
    assert_eq!(record.password_secret().unwrap().expose(), "New-Secret-99");
    let audit = f
        .storage
        .customer_audit(f.tenant, carol, 1, 50)
        .await
        .unwrap();
    assert!(
        !serde_json::to_string(&audit.events)
            .unwrap()
            .contains("New-Secret-99")
    );
}

#[tokio::test]
async fn upstream_duplicates_are_skipped_gaps_refused_and_bad_changes_rejected_alone() {
    let f = fixture().await;
    let router = f.synced_router("A").await;
    let other = f.synced_router("B").await;
    let dave = f.customer("dave", Some(router)).await;
    let foreign = f.customer("erin", Some(other)).await;
    let entry = |id: Uuid, key: &str, amount: i64| LedgerEntry {
        id,
        tenant_id: f.tenant,
        customer_id: dave,
        kind: LedgerKind::Recharge,
        amount: Money::from_minor(amount),
        method: Some("CASH".into()),
        transaction_id: None,
        description: None,
        idempotency_key: Some(key.into()),
        actor: agent_actor(router, "A"),
        created_at: Utc::now(),
    };
    let first = entry(Uuid::now_v7(), "k1", 10_000);
    let mut foreign_edit = site_record(f.tenant, foreign);
    foreign_edit.last_ip = Some(Lww::new(Some("1.2.3.4".into()), site_stamp(0)));
    let batch = vec![
        change(1, ChangeBody::Ledger(first.clone())),
        change(2, ChangeBody::Customer(Box::new(foreign_edit))),
        json!({"seq": 3, "id": Uuid::now_v7(), "body": {"somethingNew": {}}}),
        change(
            4,
            ChangeBody::Package(Box::new(easyisp_protocol::PackageRecord::empty(
                Uuid::now_v7(),
                f.tenant,
            ))),
        ),
    ];
    let UpOutcome::Applied {
        acked_through,
        applied,
        rejected,
        ..
    } = f.apply(router, 1, batch.clone()).await
    else {
        panic!()
    };
    assert_eq!((acked_through, applied), (4, 1));
    assert_eq!(
        rejected.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [2, 3, 4],
        "{rejected:?}"
    );
    let balance = "SELECT balance FROM customers WHERE id = ?1";
    assert_eq!(f.scalar(balance, dave).await, 10_000);
    // The same batch again: nothing applied twice.
    let again = f.apply(router, 1, batch).await;
    assert!(matches!(
        again,
        UpOutcome::Applied {
            acked_through: 4,
            applied: 0,
            ..
        }
    ));
    assert_eq!(f.scalar(balance, dave).await, 10_000);
    // A later batch repeating the entry, or its idempotency key under a new id, is a duplicate.
    let replay = vec![
        change(5, ChangeBody::Ledger(first.clone())),
        change(6, ChangeBody::Ledger(entry(Uuid::now_v7(), "k1", 10_000))),
        change(7, ChangeBody::Ledger(entry(Uuid::now_v7(), "k2", 5_000))),
    ];
    let UpOutcome::Applied {
        applied,
        duplicates,
        ..
    } = f.apply(router, 5, replay).await
    else {
        panic!()
    };
    assert_eq!((applied, duplicates), (1, 2));
    assert_eq!(f.scalar(balance, dave).await, 15_000);
    // A gap is refused with the position to resend from.
    let gap = f.apply(router, 9, vec![change(9, ChangeBody::Noop)]).await;
    assert_eq!(gap, UpOutcome::Gap { applied: 7 });
    assert_eq!(
        f.scalar(
            "SELECT up_applied FROM sync_routers WHERE router_id = ?1",
            router
        )
        .await,
        7
    );
    // A batch of another epoch is ignored.
    let batch = RawBatch {
        v: 1,
        router,
        epoch: "other".into(),
        first_seq: 8,
        last_seq: 8,
        changes: vec![change(8, ChangeBody::Noop)],
    };
    let wrong = f.storage.apply_up_batch(router, batch).await.unwrap();
    assert!(matches!(wrong, UpOutcome::WrongEpoch { .. }));
}

#[tokio::test]
async fn upstream_sessions_keep_the_maximum_and_adopted_customers_are_created() {
    let f = fixture().await;
    let router = f.synced_router("A").await;
    let mut adopted = site_record(f.tenant, Uuid::now_v7());
    let stamp = site_stamp(0);
    adopted.username = Some(Lww::new("frank".into(), stamp));
    adopted.name = Some(Lww::new("Frank".into(), stamp));
    adopted.connection_type = Some(Lww::new(ConnectionType::Pppoe, stamp));
    adopted.password = Some(Lww::new(
        easyisp_protocol::customer::SyncedSecret::new("router-pass"),
        stamp,
    ));
    let session = |octets: u64| SessionRecord {
        id: Uuid::from_u128(7),
        tenant_id: f.tenant,
        router_id: router,
        customer_id: Some(adopted.id),
        username: "frank".into(),
        kind: SessionKind::Pppoe,
        session_id: "81000001".into(),
        start_time: Utc::now(),
        stop_time: None,
        input_octets: octets,
        output_octets: octets * 2,
        framed_ip: Some("100.64.0.9".into()),
        mac_address: None,
        terminate_cause: None,
        updated_at: Utc::now(),
    };
    let outcome = f
        .apply(
            router,
            1,
            vec![
                change(1, ChangeBody::Customer(Box::new(adopted.clone()))),
                change(2, ChangeBody::Session(session(5_000))),
                change(3, ChangeBody::Session(session(3_000))),
            ],
        )
        .await;
    assert!(
        matches!(&outcome, UpOutcome::Applied { applied: 3, rejected, .. } if rejected.is_empty()),
        "{outcome:?}"
    );
    let detail = f
        .storage
        .get_customer(f.tenant, adopted.id, Utc::now())
        .await
        .unwrap();
    assert_eq!(
        (detail.username.as_str(), detail.nas_id),
        ("frank", Some(router))
    );
    let live = f
        .storage
        .live_status(f.tenant, adopted.id, Utc::now())
        .await
        .unwrap();
    let view = live.session.expect("active session");
    assert_eq!((view.input_octets, view.output_octets), (5_000, 10_000));
    // A username already taken in the tenant is rejected, not a failed batch.
    let mut clash = site_record(f.tenant, Uuid::now_v7());
    clash.username = Some(Lww::new("frank".into(), stamp));
    clash.name = Some(Lww::new("Other".into(), stamp));
    clash.connection_type = Some(Lww::new(ConnectionType::Pppoe, stamp));
    let outcome = f
        .apply(
            router,
            4,
            vec![change(4, ChangeBody::Customer(Box::new(clash)))],
        )
        .await;
    assert!(
        matches!(&outcome, UpOutcome::Applied { applied: 0, rejected, .. } if rejected.len() == 1),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_stamp_from_a_clock_hours_ahead_is_kept_and_a_later_central_edit_still_wins() {
    let f = fixture().await;
    let router = f.synced_router("Skewed").await;
    let kim = f.customer("kim", Some(router)).await;
    let ahead = site_stamp(3 * 3600 * 1000);
    let renewed = Utc::now() + chrono::Duration::days(30);
    let mut edit = site_record(f.tenant, kim);
    edit.expires_at = Some(Lww::new(Some(renewed), ahead));
    let outcome = f
        .apply(
            router,
            1,
            vec![change(1, ChangeBody::Customer(Box::new(edit)))],
        )
        .await;
    assert!(
        matches!(&outcome, UpOutcome::Applied { applied: 1, rejected, .. } if rejected.is_empty()),
        "{outcome:?}"
    );
    // Central's clock did not jump three hours...
    let other = f.customer("lee", Some(router)).await;
    let lee = f
        .storage
        .load_customer_record(f.tenant, other)
        .await
        .unwrap();
    assert!(lee.max_stamp().unwrap() < ahead);
    // ...yet the operator's next edit of the field is stamped after the agent's and wins.
    let target = Utc::now() + chrono::Duration::days(10);
    let target = chrono::DateTime::from_timestamp_millis(target.timestamp_millis()).unwrap();
    f.storage
        .change_customer(f.tenant, system_actor("op"), kim, "expiry", move |p| {
            p.expires_at = Some(Some(target))
        })
        .await
        .unwrap();
    let record = f.storage.load_customer_record(f.tenant, kim).await.unwrap();
    let field = record.expires_at.unwrap();
    assert_eq!(field.value, Some(target));
    assert!(field.stamp > ahead);
}
