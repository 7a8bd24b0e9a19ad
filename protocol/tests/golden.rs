//! Golden JSON: the exact wire and API formats, checked into `tests/golden/`. A format change
//! fails here and shows up in review as a diff of those files. After an intended change, run
//! `UPDATE_GOLDEN=1 cargo test -p easyisp-protocol --test golden` and commit the files.

use chrono::{DateTime, Utc};
use easyisp_protocol::audit::{AuditEvent, FieldChange};
use easyisp_protocol::customer::{
    ConnectionType, CustomerDetail, CustomerRecord, CustomerSummary, Degrees, PackageDetailRef,
    PackageRef, RouterRef, SyncedSecret,
};
use easyisp_protocol::envelope::{
    Ack, Change, ChangeBatch, ChangeBody, ClockState, Command, CommandKind, CommandOutcome,
    CommandResult, MassCutoffHold, PROTOCOL_VERSION, Rejected, ResyncRequest, SnapshotChunk,
    Status, Telemetry, decode, encode,
};
use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{Burst, PackageRecord, Speed};
use easyisp_protocol::session::{SessionKind, SessionRecord};
use easyisp_protocol::{CustomerStatus, Hlc, Money, NodeId};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::PathBuf;
use uuid::Uuid;

const ROUTER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const TENANT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
const CUSTOMER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003);
const PACKAGE: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0004);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("valid time")
        .with_timezone(&Utc)
}

fn stamp(ms: u64) -> Hlc {
    Hlc::new(1_764_000_000_000 + ms, 0, NodeId(0x9f2c_4a1b_0000_0001))
}

fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(name: &str, value: &T) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(value).expect("serialisable") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden file");
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with UPDATE_GOLDEN=1 to create it)",
            path.display()
        )
    });
    assert_eq!(
        text, expected,
        "{name}: format changed; see tests/golden.rs"
    );
    let back: T = serde_json::from_str(&expected).expect("golden file parses back");
    assert_eq!(&back, value, "{name}: does not round-trip");
}

fn customer_record() -> CustomerRecord {
    let mut c = CustomerRecord::empty(CUSTOMER, TENANT);
    c.username = Some(Lww::new("customer001".into(), stamp(1)));
    c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), stamp(1)));
    c.name = Some(Lww::new("John Doe".into(), stamp(1)));
    c.phone = Some(Lww::new(Some("+254700000000".into()), stamp(2)));
    c.connection_type = Some(Lww::new(ConnectionType::Pppoe, stamp(1)));
    c.package_id = Some(Lww::new(Some(PACKAGE), stamp(3)));
    c.router_id = Some(Lww::new(Some(ROUTER), stamp(1)));
    c.expires_at = Some(Lww::new(Some(at("2026-02-01T00:00:00Z")), stamp(4)));
    c.suspended = Some(Lww::new(false, stamp(5)));
    c.latitude = Some(Lww::new(Some(Degrees::from_e7(-12_863_890)), stamp(1)));
    c
}

fn package_record() -> PackageRecord {
    let mut p = PackageRecord::empty(PACKAGE, TENANT);
    p.name = Some(Lww::new("10 Mbps Home".into(), stamp(1)));
    p.price = Some(Lww::new(Money::from_minor(200_000), stamp(1)));
    p.download_speed = Some(Lww::new(Speed::from_mbps(10), stamp(1)));
    p.upload_speed = Some(Lww::new(Speed::from_mbps(5), stamp(1)));
    p.validity_days = Some(Lww::new(30, stamp(1)));
    p.burst = Some(Lww::new(
        Some(Burst {
            download_speed: Speed::from_mbps(20),
            upload_speed: Speed::from_mbps(10),
            threshold_download: None,
            threshold_upload: None,
            time_secs: 8,
        }),
        stamp(1),
    ));
    p
}

fn actor() -> Actor {
    Actor {
        kind: ActorKind::Operator,
        id: Some(Uuid::from_u128(42)),
        name: "admin".into(),
    }
}

fn ledger_entry() -> LedgerEntry {
    LedgerEntry {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0010),
        tenant_id: TENANT,
        customer_id: CUSTOMER,
        kind: LedgerKind::Recharge,
        amount: Money::from_minor(50_050),
        method: Some("MPESA".into()),
        transaction_id: Some("RCB123456".into()),
        description: Some("Wallet top-up".into()),
        idempotency_key: Some("till-7-0001".into()),
        actor: actor(),
        created_at: at("2026-01-01T00:00:00Z"),
    }
}

fn session_record() -> SessionRecord {
    SessionRecord {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0020),
        tenant_id: TENANT,
        router_id: ROUTER,
        customer_id: Some(CUSTOMER),
        username: "customer001".into(),
        kind: SessionKind::Pppoe,
        session_id: "0x81000012".into(),
        start_time: at("2026-01-04T10:00:00Z"),
        stop_time: None,
        input_octets: 1_048_576_000,
        output_octets: 5_242_880_000,
        framed_ip: Some("10.5.50.100".into()),
        mac_address: Some("00:11:22:33:44:55".into()),
        terminate_cause: None,
        updated_at: at("2026-01-04T11:00:00Z"),
    }
}

#[test]
fn change_batch() {
    let audit = AuditEvent {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0030),
        tenant_id: TENANT,
        entity: "customer".into(),
        entity_id: CUSTOMER,
        at: at("2026-01-04T10:00:00Z"),
        actor: actor(),
        action: "suspend".into(),
        changes: vec![FieldChange {
            field: "suspended".into(),
            old: false.into(),
            new: true.into(),
        }],
    };
    let bodies = [
        ChangeBody::Customer(Box::new(customer_record())),
        ChangeBody::Package(Box::new(package_record())),
        ChangeBody::Ledger(ledger_entry()),
        ChangeBody::Audit(audit),
        ChangeBody::Session(session_record()),
        ChangeBody::Noop,
    ];
    let changes = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Change {
            seq: 41 + i as u64,
            id: Uuid::from_u128(0x0190_0000_0000_7000_9000_0000_0000_0000 + i as u128),
            body,
        })
        .collect();
    let batch = ChangeBatch {
        v: PROTOCOL_VERSION,
        router: ROUTER,
        epoch: "e-5f1d".into(),
        first_seq: 41,
        last_seq: 46,
        changes,
    };
    check("change_batch", &batch);
    assert_eq!(
        decode::<ChangeBatch>(&encode(&batch)).expect("decodes"),
        batch
    );
}

#[test]
fn ack() {
    check(
        "ack",
        &Ack {
            v: PROTOCOL_VERSION,
            router: ROUTER,
            epoch: "e-5f1d".into(),
            acked_through: 46,
            resend_from: Some(47),
            rejected: vec![Rejected {
                seq: 44,
                reason: "username: may only contain letters".into(),
            }],
            must_resync: false,
        },
    );
}

#[test]
fn status_and_its_last_will() {
    let online = Status {
        v: PROTOCOL_VERSION,
        router: ROUTER,
        online: true,
        session: 7,
        agent_version: Some("0.1.0".into()),
        started_at: Some(at("2026-01-04T09:59:00Z")),
        epoch: Some("e-5f1d".into()),
        applied_through: Some(46),
    };
    check("status_online", &online);
    let will = Status {
        online: false,
        agent_version: None,
        started_at: None,
        epoch: None,
        applied_through: None,
        ..online
    };
    check("status_offline", &will);
}

#[test]
fn telemetry() {
    check(
        "telemetry",
        &Telemetry {
            v: PROTOCOL_VERSION,
            router: ROUTER,
            at: at("2026-01-04T10:00:30Z"),
            router_reachable: true,
            customers: 1200,
            active_sessions: 830,
            outbox_depth: 3,
            last_reconcile: Some(at("2026-01-04T10:00:00Z")),
            clock: ClockState::Synchronised,
            mass_cutoff_hold: Some(MassCutoffHold {
                customers: 600,
                of_total: 1200,
                since: at("2026-01-04T10:00:00Z"),
            }),
        },
    );
}

#[test]
fn commands_and_results() {
    let cmd = |kind| Command {
        v: PROTOCOL_VERSION,
        id: Uuid::from_u128(0x77),
        expires_at: at("2026-01-04T10:00:05Z"),
        command: kind,
    };
    check(
        "command_disconnect",
        &cmd(CommandKind::Disconnect {
            customer_id: CUSTOMER,
        }),
    );
    check(
        "command_live_status",
        &cmd(CommandKind::LiveStatus {
            customer_id: CUSTOMER,
        }),
    );
    check("command_resync", &cmd(CommandKind::Resync));
    check(
        "command_result_live_status",
        &CommandResult {
            v: PROTOCOL_VERSION,
            id: Uuid::from_u128(0x77),
            outcome: CommandOutcome::LiveStatus(Some(Box::new(session_record()))),
        },
    );
    check(
        "command_result_failed",
        &CommandResult {
            v: PROTOCOL_VERSION,
            id: Uuid::from_u128(0x77),
            outcome: CommandOutcome::Failed("router unreachable".into()),
        },
    );
}

#[test]
fn snapshot() {
    check(
        "resync_request",
        &ResyncRequest {
            v: PROTOCOL_VERSION,
            router: ROUTER,
            epoch: "e-5f1d".into(),
            reason: "new replica".into(),
        },
    );
    check(
        "snapshot_chunk",
        &SnapshotChunk {
            v: PROTOCOL_VERSION,
            router: ROUTER,
            snapshot_id: Uuid::from_u128(0x99),
            epoch: "e-5f1d".into(),
            index: 0,
            count: 2,
            high_water_seq: 46,
            items: vec![
                ChangeBody::Package(Box::new(package_record())),
                ChangeBody::Customer(Box::new(customer_record())),
            ],
        },
    );
}

#[test]
fn customer_api_views_match_the_seed_shapes() {
    let router = RouterRef {
        id: ROUTER,
        name: "Router 1".into(),
        ip_address: "192.168.1.1".into(),
    };
    let summary = CustomerSummary {
        id: CUSTOMER,
        username: "customer001".into(),
        name: "John Doe".into(),
        email: Some("john@example.com".into()),
        phone: Some("+254700000000".into()),
        connection_type: ConnectionType::Pppoe,
        status: CustomerStatus::Active,
        expires_at: Some(at("2026-02-01T00:00:00Z")),
        location: Some("Nairobi, Kenya".into()),
        wallet_balance: Money::from_minor(50_000),
        package: Some(PackageRef {
            id: PACKAGE,
            name: "10 Mbps Home".into(),
            price: Money::from_minor(200_000),
        }),
        router: Some(router.clone()),
        created_at: at("2025-01-01T00:00:00Z"),
    };
    check("customer_summary", &summary);
    let detail = CustomerDetail {
        id: CUSTOMER,
        username: "customer001".into(),
        name: "John Doe".into(),
        email: Some("john@example.com".into()),
        phone: Some("+254700000000".into()),
        connection_type: ConnectionType::Pppoe,
        status: CustomerStatus::Active,
        expires_at: Some(at("2026-02-01T00:00:00Z")),
        location: Some("Nairobi, Kenya".into()),
        latitude: Some(Degrees::from_e7(-12_863_890)),
        longitude: Some(Degrees::from_e7(368_172_230)),
        apartment_number: Some("A12".into()),
        house_number: Some("123".into()),
        last_ip: Some("10.5.50.100".into()),
        last_mac: Some("00:11:22:33:44:55".into()),
        wallet_balance: Money::from_minor(50_000),
        total_spent: Money::from_minor(1_200_000),
        package: Some(PackageDetailRef {
            id: PACKAGE,
            name: "10 Mbps Home".into(),
            price: Money::from_minor(200_000),
            download_speed: Speed::from_mbps(10),
            upload_speed: Speed::from_mbps(10),
            data_limit: None,
        }),
        router: Some(router),
        package_id: Some(PACKAGE),
        nas_id: Some(ROUTER),
        auto_renew: false,
        static_ip: None,
        mac_bindings: vec![],
        tags: vec![],
        created_at: at("2025-01-01T00:00:00Z"),
        deleted_at: None,
    };
    check("customer_detail", &detail);
    let text = serde_json::to_string(&detail).expect("serialisable");
    assert!(
        !text.to_lowercase().contains("password"),
        "a customer view never carries a password"
    );
    assert!(text.contains(r#""walletBalance":500,"#));
    assert!(text.contains(r#""latitude":-1.286389,"#));
}

#[test]
fn records_carry_the_password_only_on_the_sync_channel_and_never_in_debug() {
    let record = customer_record();
    assert!(!format!("{record:?}").contains("Zebra-Lamp-42"));
    assert!(
        String::from_utf8(encode(&record))
            .expect("utf-8")
            .contains("Zebra-Lamp-42")
    );
}
