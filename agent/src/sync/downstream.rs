//! Downstream: central's change batches merged into the replica (docs/sync.md "Change
//! streams"). [`position`] is the pure cursor rule; [`apply_batch`] runs inside one replica
//! write transaction: every change after the applied position is checked and merged, losing
//! local writes become conflict events for central, and the new position is stored, so the
//! batch is applied entirely or not at all.
//!
//! It must not publish or touch the router: the caller acks after the commit and then wakes
//! the reconcile.

use crate::daemon::state;
use crate::replica::{Result, store};
use chrono::{DateTime, Utc};
use easyisp_protocol::NodeId;
use easyisp_protocol::audit::{AuditEvent, FieldChange};
use easyisp_protocol::customer::CustomerRecord;
use easyisp_protocol::envelope::{ChangeBatch, ChangeBody, Rejected};
use easyisp_protocol::ledger::{Actor, ActorKind};
use easyisp_protocol::merge::Conflict;
use rusqlite::Connection;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Who this agent is, for checking and stamping what it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Site {
    pub tenant: Uuid,
    pub router: Uuid,
    /// The node id of this agent's clock stamps.
    pub node: NodeId,
}

/// What a batch means for the receiver, given the last applied seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// It holds changes after `applied`: apply those.
    Apply,
    /// Everything in it was applied before: ack again, change nothing.
    Duplicate,
    /// It starts after a missing change: drop it and ask for a resend from `resend_from`.
    Gap { resend_from: u64 },
    /// `firstSeq` is 0 or after `lastSeq`: nothing sensible to ack.
    Malformed,
}

pub fn position(applied: u64, first_seq: u64, last_seq: u64) -> Position {
    if first_seq == 0 || first_seq > last_seq {
        Position::Malformed
    } else if first_seq > applied.saturating_add(1) {
        Position::Gap {
            resend_from: applied + 1,
        }
    } else if last_seq <= applied {
        Position::Duplicate
    } else {
        Position::Apply
    }
}

/// Whether central may send this change to this agent; `Err` is the reason for the ack's
/// `rejected` list.
pub fn check(body: &ChangeBody, site: &Site) -> std::result::Result<(), String> {
    let tenant = |kind: &str, id: Uuid, tenant: Uuid| {
        if tenant == site.tenant {
            Ok(())
        } else {
            Err(format!(
                "{kind} {id} belongs to tenant {tenant}, not to this router's tenant {}",
                site.tenant
            ))
        }
    };
    match body {
        ChangeBody::Customer(c) => tenant("customer", c.id, c.tenant_id),
        ChangeBody::Package(p) => tenant("package", p.id, p.tenant_id),
        ChangeBody::Ledger(e) => tenant("ledger entry", e.id, e.tenant_id),
        ChangeBody::Session(s) => Err(format!(
            "session {}: sessions are written only by the router's agent",
            s.id
        )),
        // The agent keeps no audit log of its own; central's events are accepted and dropped.
        ChangeBody::Audit(_) | ChangeBody::Noop => Ok(()),
    }
}

/// What applying changes did, beyond the replica rows.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Customers, packages or ledger entries changed: reconcile and re-plan expiry.
    pub replica_changed: bool,
    /// A package changed: the reconcile must be a full pass (profiles, every customer on it).
    pub packages_changed: bool,
    /// The customers whose records (or ledgers) changed.
    pub customers: BTreeSet<Uuid>,
    /// Conflict events were queued in the outbox for central.
    pub conflicts: usize,
}

/// The outcome of one batch: the ack to publish and the effects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub acked_through: u64,
    pub resend_from: Option<u64>,
    pub rejected: Vec<Rejected>,
    pub effects: Effects,
    /// The batch was malformed: publish nothing.
    pub malformed: bool,
}

/// Applies `batch` in the caller's transaction (the epoch is checked by the caller).
pub fn apply_batch(
    tx: &Connection,
    batch: &ChangeBatch,
    site: &Site,
    now: DateTime<Utc>,
) -> Result<Applied> {
    let applied = state::get_u64(tx, state::SYNC_DOWN_APPLIED)?;
    let mut outcome = Applied {
        acked_through: applied,
        resend_from: None,
        rejected: Vec::new(),
        effects: Effects::default(),
        malformed: false,
    };
    match position(applied, batch.first_seq, batch.last_seq) {
        Position::Malformed => outcome.malformed = true,
        Position::Duplicate => {}
        Position::Gap { resend_from } => outcome.resend_from = Some(resend_from),
        Position::Apply => {
            for change in &batch.changes {
                if change.seq <= applied || change.seq > batch.last_seq {
                    continue;
                }
                match check(&change.body, site) {
                    Ok(()) => merge(tx, &change.body, site, now, &mut outcome.effects)?,
                    Err(reason) => outcome.rejected.push(Rejected {
                        seq: change.seq,
                        reason,
                    }),
                }
            }
            state::set_u64(tx, state::SYNC_DOWN_APPLIED, batch.last_seq)?;
            outcome.acked_through = batch.last_seq;
        }
    }
    Ok(outcome)
}

/// Merges one checked change from central into the replica (also used by snapshots).
pub fn merge(
    tx: &Connection,
    body: &ChangeBody,
    site: &Site,
    now: DateTime<Utc>,
    effects: &mut Effects,
) -> Result<()> {
    match body {
        ChangeBody::Customer(incoming) => {
            if let Some(stamp) = incoming.max_stamp() {
                state::observe(tx, site.node, stamp, now)?;
            }
            // Read before the merge: a local write is "unseen by central" while the outbox
            // still holds a change about this customer.
            let unacked = store::outbox_has_customer(tx, incoming.id)?;
            let (_, conflicts) = store::merge_customer(tx, incoming)?;
            let lost: Vec<&Conflict> = conflicts
                .iter()
                .filter(|c| local_write_lost(c, site.node) && unacked)
                .collect();
            if !lost.is_empty() {
                let event = conflict_event(incoming, &lost, site, now);
                tracing::warn!(
                    customer = %incoming.id,
                    fields = ?lost.iter().map(|c| c.field.as_str()).collect::<Vec<_>>(),
                    "a change made at this site lost against a newer change from central; recorded as a conflict"
                );
                store::enqueue(tx, &ChangeBody::Audit(event), now)?;
                effects.conflicts += 1;
            }
            effects.replica_changed = true;
            effects.customers.insert(incoming.id);
        }
        ChangeBody::Package(incoming) => {
            if let Some(stamp) = incoming.max_stamp() {
                state::observe(tx, site.node, stamp, now)?;
            }
            store::merge_package(tx, incoming)?;
            effects.replica_changed = true;
            effects.packages_changed = true;
        }
        ChangeBody::Ledger(entry) => {
            if store::insert_ledger(tx, entry)? {
                effects.replica_changed = true;
                effects.customers.insert(entry.customer_id);
            }
        }
        ChangeBody::Audit(_) | ChangeBody::Session(_) | ChangeBody::Noop => {}
    }
    Ok(())
}

/// A conflict where this site's write lost against central's newer one. (When central's write
/// loses, central records the conflict as it merges our upstream change.)
fn local_write_lost(conflict: &Conflict, node: NodeId) -> bool {
    conflict.lost_stamp.node == node && conflict.kept_stamp.node != node
}

fn conflict_event(
    customer: &CustomerRecord,
    lost: &[&Conflict],
    site: &Site,
    now: DateTime<Utc>,
) -> AuditEvent {
    AuditEvent {
        id: Uuid::now_v7(),
        tenant_id: site.tenant,
        entity: "customer".into(),
        entity_id: customer.id,
        at: now,
        actor: Actor {
            kind: ActorKind::Agent,
            id: Some(site.router),
            name: "sync".into(),
        },
        action: "sync-conflict".into(),
        changes: lost
            .iter()
            .map(|c| FieldChange {
                field: camel_case(&c.field),
                old: c.lost.clone(),
                new: c.kept.clone(),
            })
            .collect(),
    }
}

/// `expires_at` → `expiresAt`, the field names of the API and the wire.
fn camel_case(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for ch in field.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Replica;
    use easyisp_protocol::Hlc;
    use easyisp_protocol::envelope::Change;
    use easyisp_protocol::merge::Lww;

    const TENANT: Uuid = Uuid::from_u128(7);
    const ROUTER: Uuid = Uuid::from_u128(8);
    const CENTRAL: NodeId = NodeId(0xce);

    fn site() -> Site {
        Site {
            tenant: TENANT,
            router: ROUTER,
            node: NodeId::from_uuid(ROUTER),
        }
    }

    fn named(id: u128, name: &str, stamp: Hlc) -> CustomerRecord {
        let mut c = CustomerRecord::empty(Uuid::from_u128(id), TENANT);
        c.name = Some(Lww::new(name.to_string(), stamp));
        c
    }

    fn batch(first: u64, bodies: Vec<ChangeBody>) -> ChangeBatch {
        let changes: Vec<Change> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, body)| Change {
                seq: first + i as u64,
                id: Uuid::now_v7(),
                body,
            })
            .collect();
        ChangeBatch {
            v: 1,
            router: ROUTER,
            epoch: "e".into(),
            first_seq: first,
            last_seq: first + changes.len() as u64 - 1,
            changes,
        }
    }

    #[test]
    fn the_cursor_rule_applies_skips_and_finds_gaps() {
        assert_eq!(position(0, 1, 3), Position::Apply);
        assert_eq!(
            position(2, 1, 3),
            Position::Apply,
            "overlap: the new part applies"
        );
        assert_eq!(position(3, 1, 3), Position::Duplicate);
        assert_eq!(position(3, 5, 6), Position::Gap { resend_from: 4 });
        assert_eq!(position(3, 0, 6), Position::Malformed);
        assert_eq!(position(3, 7, 6), Position::Malformed);
    }

    #[test]
    fn sessions_and_other_tenants_records_are_rejected() {
        let other = CustomerRecord::empty(Uuid::from_u128(1), Uuid::from_u128(99));
        assert!(check(&ChangeBody::Customer(Box::new(other)), &site()).is_err());
        assert!(check(&ChangeBody::Noop, &site()).is_ok());
    }

    #[test]
    fn field_names_read_as_on_the_wire() {
        assert_eq!(camel_case("expires_at"), "expiresAt");
        assert_eq!(camel_case("name"), "name");
    }

    #[tokio::test]
    async fn a_batch_applies_once_and_a_gap_asks_for_a_resend() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let b = batch(
            1,
            vec![
                ChangeBody::Customer(Box::new(named(1, "Ann", Hlc::new(5, 0, CENTRAL)))),
                ChangeBody::Customer(Box::new(CustomerRecord::empty(
                    Uuid::from_u128(2),
                    Uuid::from_u128(99),
                ))),
            ],
        );
        let first = b.clone();
        let out = replica
            .write(move |tx| apply_batch(tx, &first, &site(), Utc::now()))
            .await
            .unwrap();
        assert_eq!(out.acked_through, 2);
        assert_eq!(
            out.rejected.len(),
            1,
            "the other tenant's customer is rejected"
        );
        assert_eq!(out.rejected[0].seq, 2);
        assert!(out.effects.replica_changed);

        let again = replica
            .write(move |tx| apply_batch(tx, &b, &site(), Utc::now()))
            .await
            .unwrap();
        assert_eq!((again.acked_through, again.resend_from), (2, None));
        assert!(
            !again.effects.replica_changed,
            "a duplicate changes nothing"
        );

        let gap = batch(4, vec![ChangeBody::Noop]);
        let out = replica
            .write(move |tx| apply_batch(tx, &gap, &site(), Utc::now()))
            .await
            .unwrap();
        assert_eq!((out.acked_through, out.resend_from), (2, Some(3)));
    }

    #[tokio::test]
    async fn an_unacknowledged_local_write_that_loses_is_sent_up_as_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let node = site().node;
        // The site renamed the customer; the change still waits in the outbox.
        replica
            .write(move |tx| {
                let local = named(1, "Local", Hlc::new(10, 0, node));
                store::merge_customer(tx, &local)?;
                store::enqueue(tx, &ChangeBody::Customer(Box::new(local)), Utc::now())
            })
            .await
            .unwrap();
        let newer = batch(
            1,
            vec![ChangeBody::Customer(Box::new(named(
                1,
                "Central",
                Hlc::new(20, 0, CENTRAL),
            )))],
        );
        let out = replica
            .write(move |tx| apply_batch(tx, &newer, &site(), Utc::now()))
            .await
            .unwrap();
        assert_eq!(out.effects.conflicts, 1);
        let queued = replica
            .read(|c| store::outbox_after(c, 1, 10))
            .await
            .unwrap();
        let ChangeBody::Audit(event) = &queued[0].body else {
            panic!("an audit event was queued: {queued:?}");
        };
        assert_eq!(event.action, "sync-conflict");
        assert_eq!(event.changes[0].field, "name");
        assert_eq!(event.changes[0].old, "Local");
        assert_eq!(event.changes[0].new, "Central");

        // An older write from central loses against the local one: central records that.
        let older = batch(
            2,
            vec![ChangeBody::Customer(Box::new(named(
                1,
                "Old",
                Hlc::new(1, 0, CENTRAL),
            )))],
        );
        let out = replica
            .write(move |tx| apply_batch(tx, &older, &site(), Utc::now()))
            .await
            .unwrap();
        assert_eq!(out.effects.conflicts, 0);
    }
}
