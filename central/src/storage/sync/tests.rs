//! Sync storage on real SQLite files: which changes write `sync_down` rows for which routers,
//! births, acks and snapshots, and the upstream apply (duplicates, gaps, rejections,
//! conflicts, ledger idempotency, session maxima, no echo).

use super::*;
use crate::storage::{
    CustomerPatch, NewCustomer, PackageInput, Recharge, RouterInput, Storage, StorageOptions,
    system_actor,
};
use chrono::Utc;
use easyisp_protocol::envelope::{ChangeBody, PROTOCOL_VERSION, Status};
use easyisp_protocol::hlc::{Hlc, NodeId};
use easyisp_protocol::ledger::{LedgerEntry, LedgerKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::session::{SessionKind, SessionRecord};
use easyisp_protocol::{ConnectionType, CustomerRecord, Money, Secret};
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Storage,
    tenant: Uuid,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(
        dir.path(),
        StorageOptions {
            readers: 2,
            synchronous_full: false,
        },
    )
    .unwrap();
    let tenant = storage
        .create_tenant("t".into(), None, "admin".into(), "hash".into())
        .await
        .unwrap();
    Fixture {
        _dir: dir,
        storage,
        tenant,
    }
}

impl Fixture {
    async fn router(&self, name: &str) -> Uuid {
        let input = RouterInput {
            name: name.into(),
            ip_address: "10.0.0.1".into(),
            location: None,
        };
        let view = self
            .storage
            .create_router(self.tenant, system_actor("test"), input)
            .await
            .unwrap();
        view.id
    }

    /// An agent's birth with a fresh epoch, answered by a snapshot that it acknowledges.
    async fn synced_router(&self, name: &str) -> Uuid {
        let router = self.router(name).await;
        let presence = self.birth(router, 1, "epoch-1", 0).await;
        assert!(matches!(
            presence,
            Presence::Birth {
                plan: BirthPlan::Snapshot { .. },
                ..
            }
        ));
        let snapshot = self.storage.read_snapshot(router).await.unwrap();
        let ack = self
            .storage
            .record_down_ack(
                router,
                "epoch-1".into(),
                snapshot.high_water,
                Some(snapshot.high_water),
            )
            .await
            .unwrap();
        assert!(matches!(
            ack,
            AckOutcome::Acked {
                snapshot_done: true,
                ..
            }
        ));
        router
    }

    async fn birth(&self, router: Uuid, session: u64, epoch: &str, applied: u64) -> Presence {
        let status = Status {
            v: PROTOCOL_VERSION,
            router,
            online: true,
            session,
            agent_version: Some("0.1.0".into()),
            started_at: Some(Utc::now()),
            epoch: Some(epoch.into()),
            applied_through: Some(applied),
        };
        self.storage.record_presence(router, status).await.unwrap()
    }

    async fn customer(&self, username: &str, router: Option<Uuid>) -> Uuid {
        let input = NewCustomer {
            username: username.into(),
            password: Secret::new("Zebra-Lamp-42".into()),
            name: format!("Name {username}"),
            email: None,
            phone: None,
            connection_type: ConnectionType::Pppoe,
            package_id: None,
            router_id: router,
            expires_at: None,
            location: None,
            latitude: None,
            longitude: None,
            apartment_number: None,
            house_number: None,
            disabled: false,
            auto_renew: false,
            static_ip: None,
            mac_bindings: Vec::new(),
            tags: Vec::new(),
        };
        self.storage
            .create_customer(self.tenant, system_actor("test"), input)
            .await
            .unwrap()
            .id
    }

    /// `(seq, entity, entity_id)` of a router's outbox rows.
    async fn outbox(&self, router: Uuid) -> Vec<(u64, String, Uuid)> {
        self.storage
            .read(move |conn| {
                let mut stmt = conn.prepare(
                    "SELECT seq, entity, entity_id FROM sync_down WHERE router_id = ?1 ORDER BY seq",
                )?;
                let rows = stmt
                    .query_map([router.to_string()], |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows
                    .into_iter()
                    .map(|(s, e, id)| (s as u64, e, Uuid::parse_str(&id).unwrap()))
                    .collect())
            })
            .await
            .unwrap()
    }

    async fn scalar(&self, sql: &'static str, id: Uuid) -> i64 {
        self.storage
            .read(move |conn| Ok(conn.query_row(sql, [id.to_string()], |r| r.get(0))?))
            .await
            .unwrap()
    }

    async fn apply(&self, router: Uuid, first: u64, changes: Vec<Value>) -> UpOutcome {
        let last = first + changes.len() as u64 - 1;
        let batch = RawBatch {
            v: 1,
            router,
            epoch: "epoch-1".into(),
            first_seq: first,
            last_seq: last,
            changes,
        };
        self.storage.apply_up_batch(router, batch).await.unwrap()
    }
}

fn change(seq: u64, body: ChangeBody) -> Value {
    json!({"seq": seq, "id": Uuid::now_v7(), "body": serde_json::to_value(body).unwrap()})
}

fn site_stamp(ms_from_now: i64) -> Hlc {
    Hlc::new(
        (Utc::now().timestamp_millis() + ms_from_now) as u64,
        0,
        NodeId(0xA6E7),
    )
}

fn recharge(amount: i64) -> Recharge {
    Recharge {
        amount: Money::from_minor(amount),
        method: None,
        transaction_id: None,
        description: None,
        idempotency_key: None,
    }
}

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
