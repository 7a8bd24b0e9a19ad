//! The downstream side: reading batches from `sync_down` with each entity's current state,
//! acknowledgements, consistent snapshots, resync requests, telemetry, and the sync figures
//! the router views show.

use super::outbox::DownEntity;
use super::presence::{acknowledge, live_router_tenant};
use crate::storage::records::{customer_record, package_record};
use crate::storage::{Result, Storage, StorageError, ledger, ms, parse_uuid};
use easyisp_protocol::envelope::{Change, ChangeBody};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::collections::HashMap;
use uuid::Uuid;

/// A router's sync state as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterSyncInfo {
    pub router: Uuid,
    pub tenant: Uuid,
    pub name: String,
    pub epoch: Option<String>,
    pub down_next: u64,
    pub down_acked: u64,
    pub up_applied: u64,
    pub snapshot_pending: bool,
}

/// What the outbox holds after a position.
#[derive(Debug, Clone, PartialEq)]
pub enum DownRead {
    /// The next changes in seq order (empty: nothing to send).
    Changes(Vec<Change>),
    /// The rows right after the position are gone: only a snapshot can help.
    Gap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Unknown,
    WrongEpoch,
    Acked {
        /// The ack as recorded (capped at the last seq central assigned).
        acked_through: u64,
        /// The ack covered the snapshot in flight: incremental batches may follow.
        snapshot_done: bool,
    },
}

/// A full snapshot of one router's replica as of `high_water`.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub high_water: u64,
    pub items: Vec<ChangeBody>,
    pub customers: usize,
}

/// The sync figures shown with a router.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterSyncView {
    pub pending_changes: u64,
    pub agent_version: Option<String>,
    pub telemetry: Option<Value>,
}

fn info(conn: &Connection, router: Uuid) -> Result<Option<RouterSyncInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT r.tenant_id, r.name, s.epoch, s.down_next, s.down_acked, s.up_applied,
            s.snapshot_pending
         FROM routers r LEFT JOIN sync_routers s ON s.router_id = r.id
         WHERE r.id = ?1 AND r.deleted_at IS NULL",
    )?;
    let row = stmt
        .query_row([router.to_string()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, Option<bool>>(6)?,
            ))
        })
        .optional()?;
    let Some((tenant, name, epoch, next, acked, applied, pending)) = row else {
        return Ok(None);
    };
    Ok(Some(RouterSyncInfo {
        router,
        tenant: parse_uuid(&tenant)?,
        name,
        epoch,
        down_next: next.unwrap_or(1).max(1) as u64,
        down_acked: acked.unwrap_or(0).max(0) as u64,
        up_applied: applied.unwrap_or(0).max(0) as u64,
        snapshot_pending: pending.unwrap_or(false),
    }))
}

/// The current state of one outbox entity; `Noop` when it no longer exists.
fn body(
    conn: &Connection,
    cipher: &crate::secrets::Cipher,
    tenant: Uuid,
    entity: DownEntity,
    id: Uuid,
) -> Result<ChangeBody> {
    let found = match entity {
        DownEntity::Customer => {
            customer_record(conn, cipher, tenant, id).map(|r| ChangeBody::Customer(Box::new(r)))
        }
        DownEntity::Package => {
            package_record(conn, tenant, id).map(|r| ChangeBody::Package(Box::new(r)))
        }
        DownEntity::Ledger => ledger::entry(conn, tenant, id).map(ChangeBody::Ledger),
    };
    match found {
        Err(StorageError::NotFound) => Ok(ChangeBody::Noop),
        other => other,
    }
}

fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(0, |v| v.len())
}

impl Storage {
    /// The router's sync state; `None` for an unknown or deleted router.
    pub async fn sync_router(&self, router: Uuid) -> Result<Option<RouterSyncInfo>> {
        self.read(move |conn| info(conn, router)).await
    }

    /// The next changes after `after`: at most `max_changes`, and no more than `max_bytes`
    /// of JSON unless a single change is larger. Each carries its entity's current state.
    pub async fn read_down(
        &self,
        router: Uuid,
        after: u64,
        max_changes: usize,
        max_bytes: usize,
    ) -> Result<DownRead> {
        let cipher = self.cipher();
        self.read(move |conn| {
            let tenant = info(conn, router)?.ok_or(StorageError::NotFound)?.tenant;
            let mut stmt = conn.prepare_cached(
                "SELECT seq, change_id, entity, entity_id FROM sync_down
                 WHERE router_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(
                    params![
                        router.to_string(),
                        after.min(i64::MAX as u64) as i64,
                        max_changes as i64
                    ],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut superseded = conn.prepare_cached(
                "SELECT 1 FROM sync_down WHERE router_id = ?1 AND entity_id = ?2 AND seq > ?3
                 LIMIT 1",
            )?;
            let mut changes = Vec::with_capacity(rows.len());
            let mut bytes = 0;
            for (seq, change_id, entity, entity_id) in rows {
                let seq = seq.max(0) as u64;
                if seq != after + changes.len() as u64 + 1 {
                    if changes.is_empty() {
                        return Ok(DownRead::Gap);
                    }
                    break;
                }
                let entity = DownEntity::parse(&entity)
                    .ok_or_else(|| StorageError::corrupt(format!("outbox entity {entity:?}")))?;
                let body = if entity == DownEntity::Customer
                    && superseded
                        .query_row(params![router.to_string(), entity_id, seq as i64], |_| {
                            Ok(())
                        })
                        .optional()?
                        .is_some()
                {
                    // A later change of this outbox carries the customer's state again (each
                    // change carries the state at read time): this one goes as a no-op, so an
                    // agent catching up on many edits of few customers is sent each customer
                    // once. Only customers: a package or ledger entry a later customer change
                    // refers to must still arrive before it.
                    ChangeBody::Noop
                } else {
                    body(conn, &cipher, tenant, entity, parse_uuid(&entity_id)?)?
                };
                let change = Change {
                    seq,
                    id: parse_uuid(&change_id)?,
                    body,
                };
                let size = json_len(&change);
                if !changes.is_empty() && bytes + size > max_bytes {
                    break;
                }
                bytes += size;
                changes.push(change);
            }
            Ok(DownRead::Changes(changes))
        })
        .await
    }

    /// Records the agent's cumulative ack: deletes the rows it covers. `snapshot_high_water`
    /// is the high-water seq of the snapshot in flight, if any; an ack reaching it completes
    /// the snapshot.
    pub async fn record_down_ack(
        &self,
        router: Uuid,
        epoch: String,
        acked_through: u64,
        snapshot_high_water: Option<u64>,
    ) -> Result<AckOutcome> {
        self.write(move |tx| {
            let conn = tx.conn();
            let Some(state) = info(conn, router)? else {
                return Ok(AckOutcome::Unknown);
            };
            if state.epoch.as_deref() != Some(epoch.as_str()) {
                return Ok(AckOutcome::WrongEpoch);
            }
            let acked = acked_through.min(state.down_next - 1);
            if acked > state.down_acked {
                acknowledge(conn, router, acked)?;
            }
            let snapshot_done = snapshot_high_water.is_some_and(|h| acked_through >= h);
            if snapshot_done {
                conn.prepare_cached(
                    "UPDATE sync_routers SET snapshot_pending = 0 WHERE router_id = ?1",
                )?
                .execute([router.to_string()])?;
            }
            Ok(AckOutcome::Acked {
                acked_through: acked.max(state.down_acked),
                snapshot_done,
            })
        })
        .await
    }

    /// Everything the router's replica should hold, read in one transaction: every package
    /// of the tenant, every customer of the router (deleted ones too) and their ledger
    /// entries, consistent with `high_water`, the last seq assigned so far.
    pub async fn read_snapshot(&self, router: Uuid) -> Result<Snapshot> {
        let cipher = self.cipher();
        self.read(move |conn| {
            conn.execute_batch("BEGIN")?;
            let result = snapshot_in(conn, &cipher, router);
            let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
            if let Err(e) = conn.execute_batch(end) {
                tracing::warn!(error = %e, "ending the snapshot read failed");
            }
            result
        })
        .await
    }

    /// Marks a snapshot as owed (an agent's resync request): it is sent now and, should
    /// central restart first, at the agent's next birth.
    pub async fn request_snapshot(&self, router: Uuid) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .conn()
                .prepare_cached(
                    "UPDATE sync_routers SET snapshot_pending = 1
                     WHERE router_id = ?1 AND epoch IS NOT NULL",
                )?
                .execute([router.to_string()])?;
            Ok(n > 0)
        })
        .await
    }

    /// Keeps the latest telemetry of a router and moves its `lastSeen`; false for an unknown
    /// router.
    pub async fn record_telemetry(&self, router: Uuid, telemetry: Value) -> Result<bool> {
        self.write(move |tx| {
            let conn = tx.conn();
            let Some(tenant) = live_router_tenant(conn, router)? else {
                return Ok(false);
            };
            let now = ms(tx.now());
            conn.prepare_cached(
                "INSERT INTO sync_routers (router_id, tenant_id, telemetry, telemetry_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (router_id) DO UPDATE SET telemetry = excluded.telemetry,
                    telemetry_at = excluded.telemetry_at",
            )?
            .execute(params![
                router.to_string(),
                tenant.to_string(),
                telemetry.to_string(),
                now
            ])?;
            conn.prepare_cached("UPDATE routers SET last_seen = ?2 WHERE id = ?1")?
                .execute(params![router.to_string(), now])?;
            Ok(true)
        })
        .await
    }

    /// The sync figures of a tenant's routers, for the router views.
    pub async fn router_sync_views(&self, tenant: Uuid) -> Result<HashMap<Uuid, RouterSyncView>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT router_id, epoch IS NOT NULL, down_next, down_acked, agent_version,
                    telemetry FROM sync_routers WHERE tenant_id = ?1",
            )?;
            let mut rows = stmt.query([tenant.to_string()])?;
            let mut out = HashMap::new();
            while let Some(row) = rows.next()? {
                let synced: bool = row.get(1)?;
                let (next, acked): (i64, i64) = (row.get(2)?, row.get(3)?);
                let telemetry: Option<String> = row.get(5)?;
                out.insert(
                    parse_uuid(&row.get::<_, String>(0)?)?,
                    RouterSyncView {
                        pending_changes: if synced {
                            (next - 1 - acked).max(0) as u64
                        } else {
                            0
                        },
                        agent_version: row.get(4)?,
                        telemetry: telemetry.and_then(|t| serde_json::from_str(&t).ok()),
                    },
                );
            }
            Ok(out)
        })
        .await
    }
}

fn snapshot_in(
    conn: &Connection,
    cipher: &crate::secrets::Cipher,
    router: Uuid,
) -> Result<Snapshot> {
    let state = info(conn, router)?.ok_or(StorageError::NotFound)?;
    let tenant = state.tenant;
    let ids = |sql: &str, binds: &[&dyn rusqlite::ToSql]| -> Result<Vec<Uuid>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let texts = stmt
            .query_map(binds, |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        texts.iter().map(|t| parse_uuid(t)).collect()
    };
    let (tenant_text, router_text) = (tenant.to_string(), router.to_string());
    let packages = ids(
        "SELECT id FROM packages WHERE tenant_id = ?1 ORDER BY created_at, id",
        &[&tenant_text],
    )?;
    let customers = ids(
        "SELECT id FROM customers WHERE tenant_id = ?1 AND router_id = ?2 ORDER BY rowid",
        &[&tenant_text, &router_text],
    )?;
    let entries = ids(
        "SELECT id FROM ledger WHERE tenant_id = ?1 AND customer_id IN
            (SELECT id FROM customers WHERE tenant_id = ?1 AND router_id = ?2)
         ORDER BY created_at, id",
        &[&tenant_text, &router_text],
    )?;
    let mut items = Vec::with_capacity(packages.len() + customers.len() + entries.len());
    for id in packages {
        items.push(body(conn, cipher, tenant, DownEntity::Package, id)?);
    }
    for id in &customers {
        items.push(body(conn, cipher, tenant, DownEntity::Customer, *id)?);
    }
    for id in entries {
        items.push(body(conn, cipher, tenant, DownEntity::Ledger, id)?);
    }
    Ok(Snapshot {
        high_water: state.down_next - 1,
        items,
        customers: customers.len(),
    })
}
