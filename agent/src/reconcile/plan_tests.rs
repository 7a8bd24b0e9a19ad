//! The planner against hand-built router states: what it creates, changes, removes and
//! leaves alone, and in which order.

use super::desired::{Builder, Desired};
use super::marker;
use super::plan::{Observed, Op, plan};
use crate::expiry::plan::Gate;
use crate::routeros::{Id, PppProfile, PppSecret, PppSession, Text};
use chrono::{DateTime, TimeZone, Utc};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::{Hlc, NodeId, Secret};
use uuid::Uuid;

const PACKAGE: Uuid = Uuid::from_u128(0x100);
const TENANT: Uuid = Uuid::from_u128(1);
const ROUTER: Uuid = Uuid::from_u128(0x200);

fn now() -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000, 0)
        .single()
        .expect("in range")
}

fn stamp() -> Hlc {
    Hlc::new(1, 0, NodeId(1))
}

fn package() -> PackageRecord {
    let mut p = PackageRecord::empty(PACKAGE, TENANT);
    p.name = Some(Lww::new("Home 10".into(), stamp()));
    p.download_speed = Some(Lww::new(Speed::from_mbps(10), stamp()));
    p.upload_speed = Some(Lww::new(Speed::from_mbps(5), stamp()));
    p
}

fn customer(n: u128, name: &str, kind: ConnectionType) -> CustomerRecord {
    let mut c = CustomerRecord::empty(Uuid::from_u128(n), TENANT);
    c.username = Some(Lww::new(name.into(), stamp()));
    c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), stamp()));
    c.connection_type = Some(Lww::new(kind, stamp()));
    c.package_id = Some(Lww::new(Some(PACKAGE), stamp()));
    c.router_id = Some(Lww::new(Some(ROUTER), stamp()));
    c.expires_at = Some(Lww::new(Some(now() + chrono::Duration::days(10)), stamp()));
    c
}

fn desired(customers: &[CustomerRecord], gate: Gate) -> Desired {
    let mut builder = Builder::new(ROUTER, vec![package()], gate, now());
    for c in customers {
        builder.add(c);
    }
    builder.finish()
}

/// The router state after applying `desired` perfectly.
fn applied(desired: &Desired) -> Observed {
    let mut next = 0;
    let mut id = || {
        next += 1;
        Id(format!("*{next:X}"))
    };
    Observed {
        ppp_profiles: desired
            .ppp_profiles
            .values()
            .map(|s| PppProfile {
                id: id(),
                name: s.name.clone(),
                local_address: None,
                remote_address: None,
                rate_limit: s.rate_limit.clone(),
                address_list: None,
                dns_server: None,
                only_one: None,
                session_timeout: None,
                idle_timeout: None,
                comment: s.comment.clone(),
                builtin: false,
            })
            .collect(),
        ppp_secrets: desired
            .ppp_secrets
            .values()
            .map(|s| secret(&mut id, s.name.clone(), s.disabled, s.comment.clone()))
            .collect(),
        ..Observed::default()
    }
}

fn secret(
    id: &mut impl FnMut() -> Id,
    name: Text,
    disabled: bool,
    comment: Option<Text>,
) -> PppSecret {
    PppSecret {
        id: id(),
        name,
        password: Some(Secret::new("Zebra-Lamp-42".into())),
        service: "pppoe".into(),
        profile: Text::from("Home 10"),
        disabled,
        comment,
        local_address: None,
        remote_address: None,
        caller_id: None,
        limit_bytes_in: None,
        limit_bytes_out: None,
        last_logged_out: None,
        last_disconnect_reason: None,
    }
}

fn session(name: &str) -> PppSession {
    PppSession {
        id: Id("*90".into()),
        name: Text::from(name),
        service: Some("pppoe".into()),
        caller_id: None,
        address: None,
        uptime: None,
        session_id: None,
        interface_id: None,
        upload_bytes: None,
        download_bytes: None,
    }
}

#[test]
fn an_empty_router_gets_profiles_before_secrets() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let ops = plan(&wanted, &Observed::default()).ops;
    assert!(
        matches!(&ops[0], Op::CreatePppProfile(p) if p.rate_limit.as_deref() == Some("5M/10M"))
    );
    assert!(matches!(&ops[1], Op::CreateHotspotProfile(_)));
    assert!(
        matches!(&ops[2], Op::CreatePppSecret(s) if s.name == "alice" && !s.disabled && s.profile == "Home 10")
    );
    assert_eq!(ops.len(), 3);
}

#[test]
fn a_router_in_line_needs_nothing() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.hotspot_profiles = vec![];
    let ops = plan(&wanted, &router).ops;
    assert!(
        ops.iter()
            .all(|op| matches!(op, Op::CreateHotspotProfile(_))),
        "{ops:?}"
    );
}

#[test]
fn suspended_customer_is_disabled_then_dropped() {
    let active = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&active);
    router.ppp_sessions = vec![session("alice")];
    let mut suspended = customer(1, "alice", ConnectionType::Pppoe);
    suspended.suspended = Some(Lww::new(true, stamp()));
    let ops = plan(&desired(&[suspended], Gate::open(now())), &router).ops;
    let update = ops
        .iter()
        .position(|op| matches!(op, Op::UpdatePppSecret(_, s) if s.disabled));
    let kick = ops
        .iter()
        .position(|op| matches!(op, Op::KickPpp { name, .. } if *name == "alice"));
    assert!(
        update.is_some() && kick.is_some() && update < kick,
        "{ops:?}"
    );
}

#[test]
fn expiry_held_by_the_gate_keeps_access() {
    let mut expired = customer(1, "alice", ConnectionType::Pppoe);
    expired.expires_at = Some(Lww::new(
        Some(now() - chrono::Duration::seconds(5)),
        stamp(),
    ));
    let held = Gate {
        enforce_through: now() - chrono::Duration::seconds(60),
        hold: None,
    };
    let wanted = desired(&[expired.clone()], held);
    assert!(!wanted.ppp_secrets[&expired.id].disabled);
    let enforced = desired(&[expired.clone()], Gate::open(now()));
    assert!(enforced.ppp_secrets[&expired.id].disabled);
}

#[test]
fn objects_we_do_not_own_are_never_touched() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    let mut n = 50;
    let mut id = || {
        n += 1;
        Id(format!("*{n:X}"))
    };
    router.ppp_secrets.push(secret(
        &mut id,
        Text::from("bob"),
        false,
        Some(Text::from("old billing")),
    ));
    router
        .ppp_secrets
        .push(secret(&mut id, Text::from("carol"), false, None));
    router.ppp_sessions = vec![session("bob")];
    let ops = plan(&wanted, &router).ops;
    assert!(
        ops.iter()
            .all(|op| !op.describe().contains("bob") && !op.describe().contains("carol")),
        "{ops:?}"
    );
}

#[test]
fn a_name_held_by_a_foreign_object_blocks_instead_of_overwriting() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.ppp_secrets[0].comment = Some(Text::from("hand made"));
    let result = plan(&wanted, &router);
    assert!(
        result
            .ops
            .iter()
            .all(|op| !matches!(op, Op::CreatePppSecret(_) | Op::UpdatePppSecret(..)))
    );
    assert_eq!(result.blocked.len(), 1);
    assert!(result.blocked[0].1.contains("adopt"));
}

#[test]
fn hand_edits_to_our_objects_are_repaired() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.ppp_secrets[0].password = Some(Secret::new("changed-at-router".into()));
    router.ppp_profiles[0].rate_limit = Some("100M/100M".into());
    let ops = plan(&wanted, &router).ops;
    assert!(ops.iter().any(|op| matches!(op, Op::UpdatePppSecret(..))));
    assert!(ops.iter().any(
        |op| matches!(op, Op::UpdatePppProfile(_, p) if p.rate_limit.as_deref() == Some("5M/10M"))
    ));
    assert!(
        ops.iter()
            .all(|op| !op.describe().contains("Zebra")
                && !op.describe().contains("changed-at-router"))
    );
}

#[test]
fn a_deleted_customer_loses_its_secret_and_its_session() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.ppp_sessions = vec![session("alice")];
    let mut deleted = customer(1, "alice", ConnectionType::Pppoe);
    deleted.deleted_at = Some(Lww::new(Some(now()), stamp()));
    let ops = plan(&desired(&[deleted], Gate::open(now())), &router).ops;
    let remove = ops
        .iter()
        .position(|op| matches!(op, Op::RemovePppSecret(s) if s.name == "alice"));
    let kick = ops.iter().position(|op| matches!(op, Op::KickPpp { .. }));
    assert!(
        remove.is_some() && kick.is_some() && remove < kick,
        "{ops:?}"
    );
}

#[test]
fn a_customer_moved_to_another_router_is_absent_here() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.ppp_sessions = vec![session("alice")];
    for elsewhere in [Some(Uuid::from_u128(0x999)), None] {
        let mut moved = customer(1, "alice", ConnectionType::Pppoe);
        moved.router_id = Some(Lww::new(elsewhere, Hlc::new(2, 0, NodeId(1))));
        let gone = desired(&[moved], Gate::open(now()));
        assert!(gone.ppp_secrets.is_empty() && gone.cut_users.is_empty());
        let ops = plan(&gone, &router).ops;
        assert!(
            ops.iter()
                .any(|op| matches!(op, Op::RemovePppSecret(s) if s.name == "alice"))
                && ops.iter().any(|op| matches!(op, Op::KickPpp { .. })),
            "{ops:?}"
        );
    }
}

#[test]
fn a_wiped_password_removes_the_secret() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let router = applied(&wanted);
    let mut wiped = customer(1, "alice", ConnectionType::Pppoe);
    wiped.password = Some(Lww::new(SyncedSecret::new(""), Hlc::new(2, 0, NodeId(1))));
    let ops = plan(&desired(&[wiped], Gate::open(now())), &router).ops;
    assert!(
        ops.iter()
            .any(|op| matches!(op, Op::RemovePppSecret(s) if s.name == "alice")),
        "{ops:?}"
    );
}

#[test]
fn renaming_a_customer_replaces_its_secret_and_drops_the_old_session() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.hotspot_profiles = vec![];
    router.ppp_sessions = vec![session("alice")];
    let renamed = desired(
        &[customer(1, "alice2", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let ops = plan(&renamed, &router).ops;
    let create = ops
        .iter()
        .position(|op| matches!(op, Op::CreatePppSecret(s) if s.name == "alice2"));
    let remove = ops
        .iter()
        .position(|op| matches!(op, Op::RemovePppSecret(s) if s.name == "alice"));
    let kick = ops
        .iter()
        .position(|op| matches!(op, Op::KickPpp { name, .. } if *name == "alice"));
    assert!(
        create < remove && remove < kick && create.is_some(),
        "{ops:?}"
    );
    assert!(ops.iter().all(|op| !matches!(op, Op::UpdatePppSecret(..))));
}

#[test]
fn dhcp_customers_get_a_queue_and_a_cutoff_entry_when_cut() {
    let mut c = customer(2, "dave", ConnectionType::Dhcp);
    c.static_ip = Some(Lww::new(Some("10.9.0.7".into()), stamp()));
    c.disabled = Some(Lww::new(true, stamp()));
    let wanted = desired(&[c], Gate::open(now()));
    let ops = plan(&wanted, &Observed::default()).ops;
    assert!(ops.iter().any(|op| matches!(op, Op::CreateQueue(q) if q.target == "10.9.0.7/32" && q.max_limit.as_deref() == Some("5M/10M"))));
    assert!(ops.iter().any(|op| matches!(op, Op::CreateCutoff(e) if e.address == "10.9.0.7" && e.comment == Some(Text::from(marker(Uuid::from_u128(2)))))));
}

#[test]
fn a_speed_change_drops_the_live_session_so_it_reconnects_with_the_new_profile() {
    let wanted = desired(
        &[customer(1, "alice", ConnectionType::Pppoe)],
        Gate::open(now()),
    );
    let mut router = applied(&wanted);
    router.ppp_sessions = vec![session("alice")];
    router.ppp_profiles[0].rate_limit = Some("2M/4M".into());
    let ops = plan(&wanted, &router).ops;
    let update = ops
        .iter()
        .position(|op| matches!(op, Op::UpdatePppProfile(..)));
    let kick = ops.iter().position(|op| matches!(op, Op::KickPpp { .. }));
    assert!(
        update.is_some() && kick.is_some() && update < kick,
        "{ops:?}"
    );

    router.ppp_profiles[0].rate_limit = Some("5M/10M".into());
    assert!(
        plan(&wanted, &router)
            .ops
            .iter()
            .all(|op| !matches!(op, Op::KickPpp { .. })),
        "no change, no kick"
    );
}
