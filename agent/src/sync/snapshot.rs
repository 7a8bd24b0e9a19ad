//! Snapshots (docs/sync.md "Epochs, snapshots, restores"): chunks are staged on disk as they
//! arrive; the chunk that completes the set triggers the swap, in the same transaction: every
//! item merged with the per-field rule (newer local edits survive), customers the snapshot
//! lacks removed unless the outbox still holds an unacknowledged change about them, and the
//! applied position set to the snapshot's high-water mark.

use super::downstream::{self, Effects, Site};
use crate::daemon::state;
use crate::replica::staging::{self, Progress};
use crate::replica::{Result, store};
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::{ChangeBody, SnapshotChunk};
use rusqlite::Connection;
use std::collections::HashSet;

/// What one chunk did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// Stored; more chunks are missing.
    Waiting(Progress),
    /// The snapshot is complete and applied: ack `acked_through`.
    Applied {
        acked_through: u64,
        customers: usize,
        removed: usize,
        rejected: usize,
        effects: Effects,
    },
    /// The chunk makes no sense (index outside `count`): dropped.
    Invalid(String),
}

/// Stages `chunk` and, when it completes its snapshot, applies the snapshot (the epoch is
/// checked by the caller).
pub fn stage_and_apply(
    tx: &Connection,
    chunk: &SnapshotChunk,
    site: &Site,
    now: DateTime<Utc>,
) -> Result<Staged> {
    if chunk.count == 0 || chunk.index >= chunk.count {
        return Ok(Staged::Invalid(format!(
            "chunk {} of {} is out of range",
            chunk.index, chunk.count
        )));
    }
    let progress = staging::stage(tx, chunk)?;
    if !progress.complete() {
        return Ok(Staged::Waiting(progress));
    }
    let id = chunk.snapshot_id.to_string();
    let mut present = HashSet::new();
    let mut effects = Effects::default();
    let mut rejected = 0;
    for index in 0..chunk.count {
        for body in staging::items(tx, &id, index)? {
            match downstream::check(&body, site) {
                Ok(()) => {
                    if let ChangeBody::Customer(c) = &body {
                        present.insert(c.id);
                    }
                    downstream::merge(tx, &body, site, now, &mut effects)?;
                }
                Err(reason) => {
                    rejected += 1;
                    tracing::warn!(snapshot = %id, %reason, "snapshot item rejected");
                }
            }
        }
    }
    let mut removed = 0;
    for customer in store::customer_ids(tx)? {
        if !present.contains(&customer) && !store::outbox_has_customer(tx, customer)? {
            store::remove_customer(tx, customer)?;
            removed += 1;
        }
    }
    if removed > 0 {
        effects.replica_changed = true;
    }
    state::set_u64(tx, state::SYNC_DOWN_APPLIED, chunk.high_water_seq)?;
    staging::clear(tx)?;
    Ok(Staged::Applied {
        acked_through: chunk.high_water_seq,
        customers: present.len(),
        removed,
        rejected,
        effects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replica::Replica;
    use easyisp_protocol::customer::CustomerRecord;
    use easyisp_protocol::merge::Lww;
    use easyisp_protocol::{Hlc, NodeId};
    use uuid::Uuid;

    const TENANT: Uuid = Uuid::from_u128(7);
    const ROUTER: Uuid = Uuid::from_u128(8);

    fn site() -> Site {
        Site {
            tenant: TENANT,
            router: ROUTER,
            node: NodeId::from_uuid(ROUTER),
        }
    }

    fn customer(id: u128, name: &str, stamp: Hlc) -> CustomerRecord {
        let mut c = CustomerRecord::empty(Uuid::from_u128(id), TENANT);
        c.name = Some(Lww::new(name.to_string(), stamp));
        c
    }

    fn chunk(index: u32, count: u32, items: Vec<ChangeBody>) -> SnapshotChunk {
        SnapshotChunk {
            v: 1,
            router: ROUTER,
            snapshot_id: Uuid::from_u128(0x5a),
            epoch: "e".into(),
            index,
            count,
            high_water_seq: 40,
            items,
        }
    }

    #[tokio::test]
    async fn a_complete_snapshot_replaces_the_replica_but_keeps_unsent_local_work() {
        let dir = tempfile::tempdir().unwrap();
        let replica = Replica::open(&dir.path().join("replica.db")).unwrap();
        let node = site().node;
        let central = NodeId(0xce);
        replica
            .write(move |tx| {
                // 1: central forgot it; 2: a local edit newer than the snapshot's; 3: created at
                // the site and not yet acknowledged by central.
                store::merge_customer(tx, &customer(1, "Gone", Hlc::new(1, 0, central)))?;
                store::merge_customer(tx, &customer(2, "Local", Hlc::new(50, 0, node)))?;
                let new = customer(3, "New", Hlc::new(50, 0, node));
                store::merge_customer(tx, &new)?;
                store::enqueue(tx, &ChangeBody::Customer(Box::new(new)), Utc::now())?;
                Ok(())
            })
            .await
            .unwrap();
        let first = chunk(
            0,
            2,
            vec![ChangeBody::Customer(Box::new(customer(
                2,
                "Central",
                Hlc::new(10, 0, central),
            )))],
        );
        let staged = replica
            .write(move |tx| stage_and_apply(tx, &first, &site(), Utc::now()))
            .await
            .unwrap();
        assert_eq!(
            staged,
            Staged::Waiting(Progress {
                received: 1,
                count: 2
            })
        );
        let last = chunk(
            1,
            2,
            vec![ChangeBody::Customer(Box::new(customer(
                4,
                "Fresh",
                Hlc::new(10, 0, central),
            )))],
        );
        let staged = replica
            .write(move |tx| stage_and_apply(tx, &last, &site(), Utc::now()))
            .await
            .unwrap();
        let Staged::Applied {
            acked_through,
            removed,
            ..
        } = staged
        else {
            panic!("applied: {staged:?}");
        };
        assert_eq!((acked_through, removed), (40, 1));
        let mut ids = replica.read(store::customer_ids).await.unwrap();
        ids.sort();
        assert_eq!(
            ids,
            vec![Uuid::from_u128(2), Uuid::from_u128(3), Uuid::from_u128(4)]
        );
        let kept = replica
            .read(|c| store::load_customer(c, Uuid::from_u128(2)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            kept.name.unwrap().value,
            "Local",
            "the newer local edit survives"
        );
        let applied = replica
            .read(|c| state::get_u64(c, state::SYNC_DOWN_APPLIED))
            .await
            .unwrap();
        assert_eq!(applied, 40);
        assert_eq!(replica.read(staging::in_progress).await.unwrap(), None);
    }
}
