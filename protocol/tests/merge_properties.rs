//! Property tests: every merge rule is commutative, associative and idempotent, and central
//! and agent derive the same status from the same merged data whatever the delivery order.

use chrono::{DateTime, TimeZone, Utc};
use easyisp_protocol::audit::AuditEvent;
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind, totals};
use easyisp_protocol::merge::{Lww, union_merge};
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::session::{SessionKind, SessionRecord};
use easyisp_protocol::{Hlc, Money, NodeId};
use proptest::prelude::*;
use std::collections::BTreeMap;
use uuid::Uuid;

const ID: Uuid = Uuid::from_u128(7);
const TENANT: Uuid = Uuid::from_u128(1);

fn time(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_760_000_000 + secs, 0)
        .single()
        .expect("in range")
}

/// Stamps from three nodes over a small time range, so equal wall times and ties are common.
fn stamp() -> impl Strategy<Value = Hlc> {
    (0u64..6, 0u32..3, 0u64..3).prop_map(|(ms, counter, node)| Hlc::new(ms, counter, NodeId(node)))
}

fn field<T: std::fmt::Debug + Clone>(
    value: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<Lww<T>>> {
    proptest::option::of((value, stamp()).prop_map(|(v, s)| Lww::new(v, s)))
}

fn customer() -> impl Strategy<Value = CustomerRecord> {
    (
        field("[a-c]{1,2}"),
        field("[a-c]{8}".prop_map(SyncedSecret::new)),
        field(proptest::option::of(0i64..10).prop_map(|o| o.map(time))),
        field(any::<bool>()),
        field(any::<bool>()),
        field(proptest::option::of(0u128..3).prop_map(|o| o.map(Uuid::from_u128))),
        field(prop_oneof![
            Just(ConnectionType::Pppoe),
            Just(ConnectionType::Hotspot)
        ]),
        field(proptest::option::of(0i64..3).prop_map(|o| o.map(time))),
        field(proptest::collection::vec("[xy]", 0..2)),
    )
        .prop_map(
            |(
                username,
                password,
                expires_at,
                suspended,
                disabled,
                package_id,
                kind,
                deleted_at,
                tags,
            )| {
                let mut c = CustomerRecord::empty(ID, TENANT);
                c.username = username;
                c.password = password;
                c.expires_at = expires_at;
                c.suspended = suspended;
                c.disabled = disabled;
                c.package_id = package_id;
                c.connection_type = kind;
                c.deleted_at = deleted_at;
                c.tags = tags;
                c
            },
        )
}

fn package() -> impl Strategy<Value = PackageRecord> {
    (
        field("[a-c]{1,3}"),
        field((0i64..500).prop_map(Money::from_minor)),
        field((0u32..3).prop_map(Speed::from_mbps)),
        field(0u32..40),
    )
        .prop_map(|(name, price, download, validity)| {
            let mut p = PackageRecord::empty(ID, TENANT);
            p.name = name;
            p.price = price;
            p.download_speed = download;
            p.validity_days = validity;
            p
        })
}

fn merged<T: Clone>(a: &T, b: &T, merge: impl Fn(&mut T, &T)) -> T {
    let mut out = a.clone();
    merge(&mut out, b);
    out
}

fn customer_merge(a: &mut CustomerRecord, b: &CustomerRecord) {
    a.merge(b);
}

fn package_merge(a: &mut PackageRecord, b: &PackageRecord) {
    a.merge(b);
}

fn session() -> impl Strategy<Value = SessionRecord> {
    (
        0i64..5,
        proptest::option::of(5i64..9),
        0u64..1000,
        0u64..1000,
        0i64..4,
        proptest::option::of("10\\.0\\.0\\.[1-3]"),
    )
        .prop_map(|(start, stop, input, output, updated, ip)| SessionRecord {
            id: ID,
            tenant_id: TENANT,
            router_id: Uuid::from_u128(9),
            customer_id: Some(Uuid::from_u128(3)),
            username: "alice".into(),
            kind: SessionKind::Pppoe,
            session_id: "0x81".into(),
            start_time: time(start),
            stop_time: stop.map(time),
            input_octets: input,
            output_octets: output,
            framed_ip: ip,
            mac_address: None,
            terminate_cause: None,
            updated_at: time(updated),
        })
}

fn ledger_entries() -> impl Strategy<Value = Vec<LedgerEntry>> {
    proptest::collection::vec((0u128..6, -500i64..500), 0..6).prop_map(|items| {
        items
            .into_iter()
            .map(|(id, amount)| LedgerEntry {
                id: Uuid::from_u128(id),
                tenant_id: TENANT,
                customer_id: ID,
                kind: if amount >= 0 {
                    LedgerKind::Recharge
                } else {
                    LedgerKind::PackageCharge
                },
                amount: Money::from_minor(amount),
                method: None,
                transaction_id: None,
                description: None,
                idempotency_key: None,
                actor: Actor {
                    kind: ActorKind::System,
                    id: None,
                    name: "system".into(),
                },
                created_at: time(0),
            })
            .collect()
    })
}

fn union(a: &[LedgerEntry], b: &[LedgerEntry]) -> BTreeMap<Uuid, LedgerEntry> {
    let mut map = BTreeMap::new();
    union_merge(&mut map, a.iter().cloned());
    union_merge(&mut map, b.iter().cloned());
    map
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn customer_merge_is_commutative(a in customer(), b in customer()) {
        prop_assert_eq!(merged(&a, &b, customer_merge), merged(&b, &a, customer_merge));
    }

    #[test]
    fn customer_merge_is_associative(a in customer(), b in customer(), c in customer()) {
        let left = merged(&merged(&a, &b, customer_merge), &c, customer_merge);
        let right = merged(&a, &merged(&b, &c, customer_merge), customer_merge);
        prop_assert_eq!(left, right);
    }

    #[test]
    fn customer_merge_is_idempotent(a in customer(), b in customer()) {
        prop_assert_eq!(merged(&a, &a, customer_merge), a.clone());
        let once = merged(&a, &b, customer_merge);
        prop_assert_eq!(merged(&once, &b, customer_merge), once);
    }

    #[test]
    fn both_sides_derive_the_same_status_after_merging(
        central in customer(), agent in customer(), now in 0i64..12,
    ) {
        let at_central = merged(&central, &agent, customer_merge);
        let at_agent = merged(&agent, &central, customer_merge);
        prop_assert_eq!(at_central.status_at(time(now)), at_agent.status_at(time(now)));
    }

    #[test]
    fn a_merge_loser_is_always_reported(a in customer(), b in customer()) {
        let mut target = a.clone();
        let conflicts = target.merge(&b);
        for conflict in &conflicts {
            prop_assert!(conflict.kept_stamp >= conflict.lost_stamp);
            if conflict.field == "password" {
                prop_assert_eq!(&conflict.lost, &serde_json::json!("changed"));
            }
        }
    }

    #[test]
    fn package_merge_is_commutative_associative_idempotent(a in package(), b in package(), c in package()) {
        prop_assert_eq!(merged(&a, &b, package_merge), merged(&b, &a, package_merge));
        let left = merged(&merged(&a, &b, package_merge), &c, package_merge);
        let right = merged(&a, &merged(&b, &c, package_merge), package_merge);
        prop_assert_eq!(left, right);
        prop_assert_eq!(merged(&a, &a, package_merge), a);
    }

    #[test]
    fn session_merge_keeps_the_maximum_and_is_order_free(a in session(), b in session(), c in session()) {
        let m = |x: &SessionRecord, y: &SessionRecord| merged(x, y, SessionRecord::merge);
        prop_assert_eq!(m(&a, &b), m(&b, &a));
        prop_assert_eq!(m(&m(&a, &b), &c), m(&a, &m(&b, &c)));
        prop_assert_eq!(m(&a, &a), a.clone());
        let ab = m(&a, &b);
        prop_assert_eq!(ab.input_octets, a.input_octets.max(b.input_octets));
        prop_assert_eq!(ab.output_octets, a.output_octets.max(b.output_octets));
    }

    #[test]
    fn ledger_union_is_order_free_and_sums_agree(a in ledger_entries(), b in ledger_entries()) {
        let ab = union(&a, &b);
        let ba = union(&b, &a);
        prop_assert_eq!(&ab, &ba);
        let again = union(&ab.values().cloned().collect::<Vec<_>>(), &b);
        prop_assert_eq!(&again, &ab);
        prop_assert_eq!(totals(ab.values()), totals(ba.values()));
    }
}

#[test]
fn audit_events_merge_by_union_on_their_id() {
    let event = |id: u128, action: &str| AuditEvent {
        id: Uuid::from_u128(id),
        tenant_id: TENANT,
        entity: "customer".into(),
        entity_id: ID,
        at: time(0),
        actor: Actor {
            kind: ActorKind::Agent,
            id: None,
            name: "pop-1".into(),
        },
        action: action.into(),
        changes: vec![],
    };
    let mut local = BTreeMap::new();
    union_merge(&mut local, [event(1, "suspend"), event(2, "activate")]);
    union_merge(&mut local, [event(2, "activate"), event(3, "cutoff")]);
    assert_eq!(local.len(), 3);
}
