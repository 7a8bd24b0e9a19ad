//! Presence (`status`): stale Wills, online/offline and `lastSeen`, and on a birth the
//! decision of docs/sync.md "Epochs, snapshots, restores" — resume the stream or snapshot —
//! recorded in the same transaction.

use crate::storage::{Result, Storage, ms, parse_uuid};
use easyisp_protocol::envelope::Status;
use rusqlite::{OptionalExtension, params};
use uuid::Uuid;

/// What central does for an agent's birth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BirthPlan {
    /// Stream incrementally from `from` (the agent has everything before it).
    Resume { from: u64 },
    /// Send a full snapshot first.
    Snapshot { reason: &'static str },
}

/// The decision table of docs/sync.md. `down_next` is the next seq central will assign, so
/// the outbox holds `(down_acked, down_next)`; a pending snapshot is always finished first.
pub fn plan_birth(
    known_epoch: Option<&str>,
    snapshot_pending: bool,
    down_acked: u64,
    down_next: u64,
    epoch: &str,
    applied_through: u64,
) -> BirthPlan {
    match known_epoch {
        None => BirthPlan::Snapshot {
            reason: "first connection of this replica",
        },
        Some(known) if known != epoch => BirthPlan::Snapshot {
            reason: "new replica epoch",
        },
        Some(_) if snapshot_pending => BirthPlan::Snapshot {
            reason: "a snapshot is still owed to this replica",
        },
        Some(_) if applied_through >= down_acked && applied_through < down_next => {
            BirthPlan::Resume {
                from: applied_through + 1,
            }
        }
        Some(_) => BirthPlan::Snapshot {
            reason: "the replica's position is outside central's outbox (a restored copy)",
        },
    }
}

/// What a `status` message changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    /// No such router (or it was deleted): the message is ignored.
    Unknown,
    /// A status of an older connection (a late Will): ignored.
    Stale {
        last_session: u64,
    },
    Offline,
    /// Online, but without a replica epoch: presence recorded, nothing streamed.
    OnlineWithoutEpoch,
    /// An agent's birth.
    Birth {
        tenant: Uuid,
        epoch: String,
        plan: BirthPlan,
        /// The last upstream seq applied for this epoch: the `down/ack` that answers a birth.
        up_applied: u64,
    },
}

impl Storage {
    /// Records a `status` message of `router`'s agent (see [`Presence`]).
    pub async fn record_presence(&self, router: Uuid, status: Status) -> Result<Presence> {
        self.write(move |tx| {
            let conn = tx.conn();
            let Some(tenant) = live_router_tenant(conn, router)? else {
                return Ok(Presence::Unknown);
            };
            conn.prepare_cached(
                "INSERT INTO sync_routers (router_id, tenant_id) VALUES (?1, ?2)
                 ON CONFLICT (router_id) DO NOTHING",
            )?
            .execute(params![router.to_string(), tenant.to_string()])?;
            let (known_epoch, session, down_next, down_acked, up_applied, pending): (
                Option<String>,
                i64,
                i64,
                i64,
                i64,
                bool,
            ) = conn
                .prepare_cached(
                    "SELECT epoch, presence_session, down_next, down_acked, up_applied,
                        snapshot_pending FROM sync_routers WHERE router_id = ?1",
                )?
                .query_row([router.to_string()], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?;
            let last_session = session.max(0) as u64;
            // A new replica restarts its session counter: its statuses are never stale.
            let new_replica = status.epoch.is_some() && status.epoch != known_epoch;
            if status.session < last_session && !new_replica {
                return Ok(Presence::Stale { last_session });
            }
            let now = ms(tx.now());
            conn.prepare_cached("UPDATE routers SET online = ?2, last_seen = ?3 WHERE id = ?1")?
                .execute(params![router.to_string(), status.online, now])?;
            conn.prepare_cached(
                "UPDATE sync_routers SET presence_session = ?2,
                    agent_version = COALESCE(?3, agent_version) WHERE router_id = ?1",
            )?
            .execute(params![
                router.to_string(),
                status.session.min(i64::MAX as u64) as i64,
                status.agent_version,
            ])?;
            if !status.online {
                return Ok(Presence::Offline);
            }
            let Some(epoch) = status.epoch else {
                return Ok(Presence::OnlineWithoutEpoch);
            };
            let (down_next, down_acked) = (down_next.max(1) as u64, down_acked.max(0) as u64);
            let plan = plan_birth(
                known_epoch.as_deref(),
                pending,
                down_acked,
                down_next,
                &epoch,
                status.applied_through.unwrap_or(0),
            );
            let mut up_applied = up_applied.max(0) as u64;
            match &plan {
                BirthPlan::Snapshot { .. } => {
                    if new_replica {
                        up_applied = 0;
                    }
                    conn.prepare_cached(
                        "UPDATE sync_routers SET snapshot_pending = 1, epoch = ?2,
                            up_applied = ?3 WHERE router_id = ?1",
                    )?
                    .execute(params![
                        router.to_string(),
                        epoch,
                        up_applied as i64
                    ])?;
                }
                BirthPlan::Resume { from } => {
                    // The agent applied more than it acknowledged: its position is the ack.
                    let applied = from - 1;
                    if applied > down_acked {
                        acknowledge(conn, router, applied)?;
                    }
                }
            }
            Ok(Presence::Birth {
                tenant,
                epoch,
                plan,
                up_applied,
            })
        })
        .await
    }
}

/// The tenant of a router that exists and is not deleted.
pub(super) fn live_router_tenant(
    conn: &rusqlite::Connection,
    router: Uuid,
) -> Result<Option<Uuid>> {
    let tenant: Option<String> = conn
        .prepare_cached("SELECT tenant_id FROM routers WHERE id = ?1 AND deleted_at IS NULL")?
        .query_row([router.to_string()], |r| r.get(0))
        .optional()?;
    tenant.map(|t| parse_uuid(&t)).transpose()
}

/// Deletes the rows an agent has applied and moves `down_acked` to `through`.
pub(super) fn acknowledge(conn: &rusqlite::Connection, router: Uuid, through: u64) -> Result<()> {
    let through = through.min(i64::MAX as u64) as i64;
    conn.prepare_cached("DELETE FROM sync_down WHERE router_id = ?1 AND seq <= ?2")?
        .execute(params![router.to_string(), through])?;
    conn.prepare_cached(
        "UPDATE sync_routers SET down_acked = MAX(down_acked, ?2) WHERE router_id = ?1",
    )?
    .execute(params![router.to_string(), through])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_birth_table_of_the_spec() {
        let resume = |from| BirthPlan::Resume { from };
        assert!(matches!(
            plan_birth(None, false, 0, 1, "e1", 0),
            BirthPlan::Snapshot { .. }
        ));
        assert!(matches!(
            plan_birth(Some("e0"), false, 5, 9, "e1", 6),
            BirthPlan::Snapshot { .. }
        ));
        // Anywhere in [downAcked, downNext - 1] resumes after it.
        assert_eq!(plan_birth(Some("e1"), false, 5, 9, "e1", 5), resume(6));
        assert_eq!(plan_birth(Some("e1"), false, 5, 9, "e1", 8), resume(9));
        // Outside: a restored copy on either side.
        assert!(matches!(
            plan_birth(Some("e1"), false, 5, 9, "e1", 4),
            BirthPlan::Snapshot { .. }
        ));
        assert!(matches!(
            plan_birth(Some("e1"), false, 5, 9, "e1", 9),
            BirthPlan::Snapshot { .. }
        ));
        // An unfinished snapshot is sent again whatever the position.
        assert!(matches!(
            plan_birth(Some("e1"), true, 5, 9, "e1", 6),
            BirthPlan::Snapshot { .. }
        ));
    }
}
