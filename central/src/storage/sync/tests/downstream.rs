//! Outbox rows, acks, births and snapshots.

use super::*;

#[tokio::test]
async fn changes_without_a_synced_router_write_no_outbox_rows() {
    let f = fixture().await;
    let never_connected = f.router("POP without agent").await;
    f.customer("loose", None).await;
    f.customer("waiting", Some(never_connected)).await;
    assert!(f.outbox(never_connected).await.is_empty());
    let rows: i64 = f
        .storage
        .read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM sync_down", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn every_change_of_a_routers_customer_writes_a_row_in_its_transaction() {
    let f = fixture().await;
    let router = f.synced_router("POP").await;
    let signal = f.storage.down_signal();
    signal.take();
    let alice = f.customer("alice", Some(router)).await;
    assert_eq!(signal.take(), vec![router], "the commit woke the engine");
    let actor = system_actor("test");
    f.storage
        .change_customer(f.tenant, actor.clone(), alice, "suspend", |p| {
            p.suspended = Some(true)
        })
        .await
        .unwrap();
    f.storage
        .recharge(f.tenant, actor.clone(), alice, recharge(50_000))
        .await
        .unwrap();
    f.storage
        .delete_customer(f.tenant, actor.clone(), alice)
        .await
        .unwrap();
    let rows = f.outbox(router).await;
    let kinds: Vec<&str> = rows.iter().map(|r| r.1.as_str()).collect();
    assert_eq!(kinds, ["customer", "customer", "ledger", "customer"]);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1, 2, 3, 4],
        "contiguous from 1"
    );
    // An update that changes nothing writes nothing.
    f.storage
        .restore_customer(f.tenant, actor.clone(), alice)
        .await
        .unwrap();
    f.storage
        .update_customer(f.tenant, actor, alice, CustomerPatch::default())
        .await
        .unwrap();
    assert_eq!(f.outbox(router).await.len(), 5);
}

#[tokio::test]
async fn a_customer_moving_routers_goes_to_both_and_takes_its_ledger_along() {
    let f = fixture().await;
    let (a, b) = (f.synced_router("A").await, f.synced_router("B").await);
    let bob = f.customer("bob", Some(a)).await;
    let actor = system_actor("test");
    f.storage
        .recharge(f.tenant, actor.clone(), bob, recharge(10_000))
        .await
        .unwrap();
    f.storage
        .recharge(f.tenant, actor.clone(), bob, recharge(20_000))
        .await
        .unwrap();
    let patch = CustomerPatch {
        router_id: Some(Some(b)),
        ..CustomerPatch::default()
    };
    f.storage
        .update_customer(f.tenant, actor, bob, patch)
        .await
        .unwrap();
    let on_a: Vec<String> = f.outbox(a).await.into_iter().map(|r| r.1).collect();
    assert_eq!(on_a, ["customer", "ledger", "ledger", "customer"]);
    let on_b: Vec<String> = f.outbox(b).await.into_iter().map(|r| r.1).collect();
    assert_eq!(on_b, ["customer", "ledger", "ledger"]);
}

#[tokio::test]
async fn packages_go_to_every_synced_router_of_the_tenant() {
    let f = fixture().await;
    let (a, b) = (f.synced_router("A").await, f.synced_router("B").await);
    let unsynced = f.router("C").await;
    let input = PackageInput {
        name: "Home".into(),
        price: Money::from_minor(200_000),
        download_speed: easyisp_protocol::Speed::from_mbps(10),
        upload_speed: easyisp_protocol::Speed::from_mbps(5),
        validity_days: 30,
        data_limit: None,
        session_time_limit: None,
        burst: None,
    };
    let package = f
        .storage
        .create_package(f.tenant, system_actor("test"), input)
        .await
        .unwrap();
    for router in [a, b] {
        assert_eq!(
            f.outbox(router).await,
            vec![(1, "package".to_string(), package.id)]
        );
    }
    assert!(f.outbox(unsynced).await.is_empty());
}

#[tokio::test]
async fn batches_carry_current_state_and_cumulative_acks_delete_rows() {
    let f = fixture().await;
    let router = f.synced_router("POP").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(f.customer(&format!("c{i}"), Some(router)).await);
    }
    let read = f
        .storage
        .read_down(router, 0, 200, 64 * 1024)
        .await
        .unwrap();
    let DownRead::Changes(changes) = read else {
        panic!("{read:?}")
    };
    assert_eq!(changes.len(), 5);
    let ChangeBody::Customer(first) = &changes[0].body else {
        panic!()
    };
    assert_eq!(first.username(), "c0");
    assert_eq!(first.password_secret().unwrap().expose(), "Zebra-Lamp-42");
    // A byte budget smaller than two records still yields one change.
    let DownRead::Changes(small) = f.storage.read_down(router, 2, 200, 10).await.unwrap() else {
        panic!()
    };
    assert_eq!(small.iter().map(|c| c.seq).collect::<Vec<_>>(), [3]);
    let ack = f
        .storage
        .record_down_ack(router, "epoch-1".into(), 3, None)
        .await
        .unwrap();
    assert_eq!(
        ack,
        AckOutcome::Acked {
            acked_through: 3,
            snapshot_done: false
        }
    );
    assert_eq!(
        f.outbox(router)
            .await
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        [4, 5]
    );
    // An ack of another epoch changes nothing; an ack past the end is capped.
    let wrong = f
        .storage
        .record_down_ack(router, "other".into(), 5, None)
        .await
        .unwrap();
    assert_eq!(wrong, AckOutcome::WrongEpoch);
    let capped = f
        .storage
        .record_down_ack(router, "epoch-1".into(), 99, None)
        .await
        .unwrap();
    assert!(matches!(
        capped,
        AckOutcome::Acked {
            acked_through: 5,
            ..
        }
    ));
    // Reading from a position whose rows are gone is a gap.
    f.customer("late", Some(router)).await;
    assert_eq!(
        f.storage
            .read_down(router, 1, 200, 64 * 1024)
            .await
            .unwrap(),
        DownRead::Gap
    );
}

#[tokio::test]
async fn births_resume_in_range_and_snapshot_otherwise() {
    let f = fixture().await;
    let router = f.synced_router("POP").await;
    for i in 0..3 {
        f.customer(&format!("c{i}"), Some(router)).await;
    }
    // Applied 2 of 3 but acked none: resume after 2, rows 1..2 are gone.
    let presence = f.birth(router, 2, "epoch-1", 2).await;
    assert!(matches!(
        presence,
        Presence::Birth {
            plan: BirthPlan::Resume { from: 3 },
            ..
        }
    ));
    assert_eq!(f.outbox(router).await.len(), 1);
    // A late Will of session 1 is stale; the Will of session 2 is not.
    let will = |session| Status {
        v: 1,
        router,
        online: false,
        session,
        agent_version: None,
        started_at: None,
        epoch: None,
        applied_through: None,
    };
    let stale = f.storage.record_presence(router, will(1)).await.unwrap();
    assert_eq!(stale, Presence::Stale { last_session: 2 });
    assert_eq!(
        f.scalar("SELECT online FROM routers WHERE id = ?1", router)
            .await,
        1
    );
    let offline = f.storage.record_presence(router, will(2)).await.unwrap();
    assert_eq!(offline, Presence::Offline);
    assert_eq!(
        f.scalar("SELECT online FROM routers WHERE id = ?1", router)
            .await,
        0
    );
    // A restored replica (position behind the ack) gets a snapshot with everything.
    let presence = f.birth(router, 3, "epoch-1", 1).await;
    assert!(matches!(
        presence,
        Presence::Birth {
            plan: BirthPlan::Snapshot { .. },
            ..
        }
    ));
    let snapshot = f.storage.read_snapshot(router).await.unwrap();
    assert_eq!((snapshot.customers, snapshot.high_water), (3, 3));
    // Until that snapshot is acknowledged, a birth asks for it again.
    let again = f.birth(router, 4, "epoch-1", 3).await;
    assert!(matches!(
        again,
        Presence::Birth {
            plan: BirthPlan::Snapshot { .. },
            ..
        }
    ));
    // A new epoch restarts its session numbers and resets the upstream cursor.
    let fresh = f.birth(router, 1, "epoch-2", 0).await;
    assert!(matches!(
        fresh,
        Presence::Birth {
            up_applied: 0,
            plan: BirthPlan::Snapshot { .. },
            ..
        }
    ));
    let unknown = f.birth(Uuid::now_v7(), 1, "e", 0).await;
    assert_eq!(unknown, Presence::Unknown);
}

#[tokio::test]
async fn a_backlog_past_the_horizon_is_dropped_for_a_snapshot() {
    let f = fixture().await;
    let stale = f.synced_router("POP gone quiet").await;
    let fresh = f.synced_router("POP fine").await;
    f.customer("quiet", Some(stale)).await;
    f.customer("fine", Some(fresh)).await;
    assert_eq!(f.outbox(stale).await.len(), 1);

    // Nothing is older than an hour ago: nothing is dropped.
    let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(
        f.storage
            .compact_sync_backlogs(an_hour_ago, 10)
            .await
            .unwrap(),
        0
    );
    // Make the quiet router's backlog old, then compact.
    let old = crate::storage::ms(Utc::now() - chrono::Duration::days(91));
    let router = stale.to_string();
    f.storage
        .write(move |tx| {
            tx.conn().execute(
                "UPDATE sync_down SET created_at = ?1 WHERE router_id = ?2",
                rusqlite::params![old, router],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    let horizon = Utc::now() - chrono::Duration::days(90);
    assert_eq!(
        f.storage.compact_sync_backlogs(horizon, 10).await.unwrap(),
        1
    );
    assert!(f.outbox(stale).await.is_empty());
    assert_eq!(f.outbox(fresh).await.len(), 1, "other routers keep theirs");
    // The quiet agent's next birth, at its old position, gets a snapshot.
    let presence = f.birth(stale, 2, "epoch-1", 1).await;
    assert!(
        matches!(
            presence,
            Presence::Birth {
                plan: BirthPlan::Snapshot { .. },
                ..
            }
        ),
        "{presence:?}"
    );
}

#[tokio::test]
async fn a_customer_changed_again_later_in_the_outbox_is_sent_once_with_its_latest_state() {
    let f = fixture().await;
    let router = f.synced_router("POP").await;
    let c0 = f.customer("c0", Some(router)).await;
    f.customer("c1", Some(router)).await;
    for name in ["First", "Second"] {
        let patch = crate::storage::CustomerPatch {
            name: Some(name.into()),
            ..Default::default()
        };
        f.storage
            .update_customer(f.tenant, system_actor("test"), c0, patch)
            .await
            .unwrap();
    }
    let DownRead::Changes(changes) = f
        .storage
        .read_down(router, 0, 200, 64 * 1024)
        .await
        .unwrap()
    else {
        panic!()
    };
    // Every seq is there (the agent's position moves through them all), but c0's state goes
    // once, in its last change; c1's only change carries it.
    let kinds: Vec<(u64, String)> = changes
        .iter()
        .map(|c| {
            let what = match &c.body {
                ChangeBody::Customer(r) => format!(
                    "{} {}",
                    r.username(),
                    r.name.as_ref().map_or("", |n| n.value.as_str())
                ),
                ChangeBody::Noop => "noop".into(),
                other => format!("{other:?}"),
            };
            (c.seq, what)
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "noop".to_string()),
            (2, "c1 Name c1".to_string()),
            (3, "noop".to_string()),
            (4, "c0 Second".to_string()),
        ],
    );
    // Read from the middle, the last change still carries the state.
    let DownRead::Changes(tail) = f
        .storage
        .read_down(router, 3, 200, 64 * 1024)
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(matches!(&tail[0].body, ChangeBody::Customer(r) if r.id == c0));
}
