//! The downstream outbox: mutations queue [`DownItem`]s on their `Tx`, and `Tx::flush` turns
//! them into `sync_down` rows of the routers they affect, inside the mutation's transaction.
//!
//! Only routers whose agent has connected at least once (a known replica epoch) get rows:
//! an agent's first birth is always answered with a snapshot, which carries everything, so
//! rows for a router without an agent would only pile up. Customers without a router cost
//! nothing (no item is queued), which keeps bulk seeding as fast as before.

use crate::storage::{Result, ms};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::Notify;
use uuid::Uuid;

/// What a `sync_down` row names; the batch carries its state when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DownEntity {
    Customer,
    Package,
    Ledger,
}

impl DownEntity {
    pub fn as_str(self) -> &'static str {
        match self {
            DownEntity::Customer => "customer",
            DownEntity::Package => "package",
            DownEntity::Ledger => "ledger",
        }
    }

    pub fn parse(text: &str) -> Option<DownEntity> {
        match text {
            "customer" => Some(DownEntity::Customer),
            "package" => Some(DownEntity::Package),
            "ledger" => Some(DownEntity::Ledger),
            _ => None,
        }
    }
}

/// A change queued on a `Tx`, resolved to routers at flush time.
#[derive(Debug, Clone)]
pub enum DownItem {
    /// One entity for one router.
    One {
        router: Uuid,
        entity: DownEntity,
        id: Uuid,
    },
    /// A package, for every synced router of its tenant.
    Package { tenant: Uuid, id: Uuid },
    /// Every ledger entry of a customer, for the router it moved to.
    CustomerLedger {
        tenant: Uuid,
        customer: Uuid,
        router: Uuid,
    },
}

/// Queues the outbox items of a customer change. `existed` is false for a new customer (it
/// has no ledger entries to carry along).
pub fn customer_items(
    id: Uuid,
    tenant: Uuid,
    before: Option<Uuid>,
    after: Option<Uuid>,
    existed: bool,
) -> impl Iterator<Item = DownItem> {
    let old = before.map(|router| DownItem::One {
        router,
        entity: DownEntity::Customer,
        id,
    });
    let moved_to = after.filter(|a| Some(*a) != before);
    let new = moved_to.map(|router| DownItem::One {
        router,
        entity: DownEntity::Customer,
        id,
    });
    let ledger = moved_to
        .filter(|_| existed)
        .map(|router| DownItem::CustomerLedger {
            tenant,
            customer: id,
            router,
        });
    old.into_iter().chain(new).chain(ledger)
}

/// Wakes the sync engine after a commit that wrote `sync_down` rows, naming the routers.
#[derive(Debug, Default)]
pub struct DownSignal {
    dirty: Mutex<HashSet<Uuid>>,
    notify: Notify,
}

impl DownSignal {
    /// Records routers with new rows and wakes the waiter (or leaves it a permit).
    pub fn mark(&self, routers: Vec<Uuid>) {
        if routers.is_empty() {
            return;
        }
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.extend(routers);
        }
        self.notify.notify_one();
    }

    /// Waits until some router got new rows since the last `take`.
    pub async fn changed(&self) {
        self.notify.notified().await;
    }

    /// The routers marked since the last call.
    pub fn take(&self) -> Vec<Uuid> {
        self.dirty
            .lock()
            .map(|mut d| d.drain().collect())
            .unwrap_or_default()
    }
}

/// Writes the rows of `items` (deduplicated, `no_echo` skipped) and returns the routers that
/// got rows.
pub(crate) fn write(
    conn: &Connection,
    items: &[DownItem],
    no_echo: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>> {
    let mut synced: HashMap<Uuid, bool> = HashMap::new();
    let mut rows: Vec<(Uuid, DownEntity, Uuid)> = Vec::new();
    let mut seen: HashSet<(Uuid, DownEntity, Uuid)> = HashSet::new();
    let mut push = |rows: &mut Vec<_>, row: (Uuid, DownEntity, Uuid)| {
        if Some(row.0) != no_echo && seen.insert(row) {
            rows.push(row);
        }
    };
    for item in items {
        match *item {
            DownItem::One { router, entity, id } => {
                if is_synced(conn, &mut synced, router)? {
                    push(&mut rows, (router, entity, id));
                }
            }
            DownItem::Package { tenant, id } => {
                for router in synced_routers(conn, tenant)? {
                    push(&mut rows, (router, DownEntity::Package, id));
                }
            }
            DownItem::CustomerLedger {
                tenant,
                customer,
                router,
            } => {
                if !is_synced(conn, &mut synced, router)? {
                    continue;
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT id FROM ledger WHERE tenant_id = ?1 AND customer_id = ?2
                     ORDER BY created_at, id",
                )?;
                let ids = stmt
                    .query_map(params![tenant.to_string(), customer.to_string()], |r| {
                        r.get::<_, String>(0)
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                for id in ids {
                    push(
                        &mut rows,
                        (router, DownEntity::Ledger, crate::storage::parse_uuid(&id)?),
                    );
                }
            }
        }
    }
    let mut touched = Vec::new();
    let created = ms(now);
    for (router, entity, id) in rows {
        let seq: i64 = conn
            .prepare_cached(
                "UPDATE sync_routers SET down_next = down_next + 1 WHERE router_id = ?1
                 RETURNING down_next - 1",
            )?
            .query_row([router.to_string()], |r| r.get(0))?;
        conn.prepare_cached(
            "INSERT INTO sync_down (router_id, seq, change_id, entity, entity_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            router.to_string(),
            seq,
            Uuid::now_v7().to_string(),
            entity.as_str(),
            id.to_string(),
            created,
        ])?;
        if !touched.contains(&router) {
            touched.push(router);
        }
    }
    Ok(touched)
}

/// Whether `router`'s agent has ever connected (central knows its epoch); cached per flush.
fn is_synced(conn: &Connection, cache: &mut HashMap<Uuid, bool>, router: Uuid) -> Result<bool> {
    if let Some(known) = cache.get(&router) {
        return Ok(*known);
    }
    let known = conn
        .prepare_cached("SELECT epoch IS NOT NULL FROM sync_routers WHERE router_id = ?1")?
        .query_row([router.to_string()], |r| r.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false);
    cache.insert(router, known);
    Ok(known)
}

/// The tenant's routers whose agent has connected at least once.
fn synced_routers(conn: &Connection, tenant: Uuid) -> Result<Vec<Uuid>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.router_id FROM sync_routers s JOIN routers r ON r.id = s.router_id
         WHERE s.tenant_id = ?1 AND s.epoch IS NOT NULL AND r.deleted_at IS NULL
         ORDER BY s.router_id",
    )?;
    let ids = stmt
        .query_map([tenant.to_string()], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    ids.iter()
        .map(|id| crate::storage::parse_uuid(id))
        .collect()
}
