//! Bulk import of new customers (seeding, moving an ISP over from another system). An
//! imported customer is stored exactly as if the API had created it: the same row, a stamp
//! for every field, its maintained counts, its search index entry, its `create` audit event
//! and its downstream sync rows. Only the order of the work differs:
//!
//! 1. [`Storage::prepare_customer_import`] does the per-row work that needs no write
//!    connection (ids, password encryption, the audit changes and their JSON) on every core,
//!    off the writer thread;
//! 2. [`Storage::commit_customer_import`] writes a prepared batch in one writer job: references
//!    checked once per distinct package and router, field stamps from the writer's clock,
//!    count deltas summed per batch, and the whole batch added to the search index in one
//!    statement (see `customer_row::index_for_search`).
//!
//! A caller can prepare the next batch while the writer commits the previous one, and merges
//! the search index once after a large import ([`Storage::optimize_search_index`]).

use super::audit::PreparedEvent;
use super::counts;
use super::customer_row::{CustomerRow, NewCustomer, index_for_search};
use super::customers::{build_row, check_references, duplicate, queue_sync, validity_days};
use super::stamps::LazyStamps;
use super::{Result, Storage, StorageError, Tx, actor_json, new_id, writer};
use crate::secrets::Cipher;
use chrono::{DateTime, Utc};
use easyisp_protocol::ledger::Actor;
use std::collections::{HashMap, HashSet};
use uuid::Uuid;

/// A batch of customers ready for [`Storage::commit_customer_import`].
pub struct PreparedImport {
    tenant: Uuid,
    /// The actor in its stored JSON form.
    actor: String,
    /// Creation time of every customer of the batch (and of its audit event).
    now: DateTime<Utc>,
    /// The validity days the default expiries were computed with, per package.
    validity: HashMap<Uuid, u32>,
    rows: Vec<PreparedCustomer>,
}

impl std::fmt::Debug for PreparedImport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedImport")
            .field("tenant", &self.tenant)
            .field("customers", &self.rows.len())
            .finish_non_exhaustive()
    }
}

impl PreparedImport {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

struct PreparedCustomer {
    row: CustomerRow,
    audit_id: Uuid,
    /// The `create` event's changes, as stored.
    changes: String,
}

/// Builds the rows of one slice of the batch (runs on its own thread).
fn prepare_rows(
    cipher: &Cipher,
    tenant: Uuid,
    now: DateTime<Utc>,
    validity: &HashMap<Uuid, u32>,
    inputs: Vec<NewCustomer>,
) -> Result<Vec<PreparedCustomer>> {
    inputs
        .into_iter()
        .map(|input| {
            let days = match (input.expires_at, input.package_id) {
                (None, Some(package)) => validity.get(&package).copied(),
                _ => None,
            };
            let row = build_row(now, cipher, tenant, input, days)?;
            let changes: Vec<_> = row
                .changed_fields(None)
                .into_iter()
                .filter_map(|(_, change)| change)
                .collect();
            Ok(PreparedCustomer {
                row,
                audit_id: new_id(),
                changes: serde_json::to_string(&changes).map_err(StorageError::corrupt)?,
            })
        })
        .collect()
}

/// Writes a prepared batch inside the writer's transaction.
fn commit(tx: &mut Tx<'_>, import: PreparedImport) -> Result<usize> {
    let PreparedImport {
        tenant,
        actor,
        now,
        validity,
        rows,
    } = import;
    let conn = tx.conn();
    let packages: HashSet<Uuid> = rows.iter().filter_map(|r| r.row.package_id).collect();
    for package in packages {
        check_references(conn, tenant, Some(package), None)?;
        if let Some(days) = validity.get(&package)
            && validity_days(conn, tenant, package)? != *days
        {
            return Err(StorageError::Conflict {
                field: Some("packageId"),
                message: "a package's validity changed while the import was prepared; import this batch again".into(),
            });
        }
    }
    let routers: HashSet<Uuid> = rows.iter().filter_map(|r| r.row.router_id).collect();
    for router in routers {
        check_references(conn, tenant, None, Some(router))?;
    }
    let n = rows.len();
    let mut deltas = counts::BatchDeltas::default();
    let mut range: Option<(i64, i64)> = None;
    for prepared in rows {
        let PreparedCustomer {
            mut row,
            audit_id,
            changes,
        } = prepared;
        // The same stamps, in the same order, as `CustomerRow::diff` gives a new row.
        row.stamps = LazyStamps::for_new_row(|| tx.stamp());
        row.insert_unindexed(tx.conn()).map_err(|e| match e {
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE =>
            {
                duplicate()
            }
            other => other,
        })?;
        range = Some(match range {
            None => (row.rowid, row.rowid),
            Some((first, _)) => (first, row.rowid),
        });
        if let Some(key) = counts::key_of(&row) {
            deltas.add(&key);
        }
        tx.audit_prepared(PreparedEvent {
            id: audit_id,
            tenant_id: tenant,
            entity: "customer",
            entity_id: row.id,
            at: now,
            actor: actor.clone(),
            action: "create",
            changes,
        });
        queue_sync(tx, None, &row);
    }
    // The writer runs one job at a time, so the batch's rowids are consecutive.
    if let Some((first, last)) = range {
        index_for_search(tx.conn(), first, last)?;
    }
    deltas.write(tx.conn(), tenant)?;
    Ok(n)
}

impl Storage {
    /// Step 1 of an import: reads the validity of the packages that default expiries come
    /// from, then builds the batch's rows on all cores (off the async runtime). Nothing is
    /// written.
    pub async fn prepare_customer_import(
        &self,
        tenant: Uuid,
        actor: Actor,
        inputs: Vec<NewCustomer>,
    ) -> Result<PreparedImport> {
        let defaults: HashSet<Uuid> = inputs
            .iter()
            .filter(|c| c.expires_at.is_none())
            .filter_map(|c| c.package_id)
            .collect();
        let validity = self
            .read(move |conn| {
                let mut validity = HashMap::new();
                for package in defaults {
                    check_references(conn, tenant, Some(package), None)?;
                    validity.insert(package, validity_days(conn, tenant, package)?);
                }
                Ok(validity)
            })
            .await?;
        let cipher = self.cipher();
        tokio::task::spawn_blocking(move || {
            let now = writer::now_ms();
            let threads = std::thread::available_parallelism()
                .map(usize::from)
                .unwrap_or(1)
                .clamp(1, 8);
            let per_thread = inputs.len().div_ceil(threads).max(1);
            let mut slices = Vec::new();
            let mut inputs = inputs.into_iter();
            loop {
                let slice: Vec<NewCustomer> = inputs.by_ref().take(per_thread).collect();
                if slice.is_empty() {
                    break;
                }
                slices.push(slice);
            }
            let built: Vec<Result<Vec<PreparedCustomer>>> = std::thread::scope(|scope| {
                let handles: Vec<_> = slices
                    .into_iter()
                    .map(|slice| {
                        let (cipher, validity) = (&cipher, &validity);
                        scope.spawn(move || prepare_rows(cipher, tenant, now, validity, slice))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(StorageError::ReadTask("an import thread panicked".into()))
                        })
                    })
                    .collect()
            });
            let mut rows = Vec::new();
            for part in built {
                rows.extend(part?);
            }
            Ok(PreparedImport {
                tenant,
                actor: actor_json(&actor),
                now,
                validity,
                rows,
            })
        })
        .await
        .map_err(|e| StorageError::ReadTask(e.to_string()))?
    }

    /// Step 2 of an import: writes a prepared batch in one transaction (all or nothing; a
    /// username taken in the tenant fails the batch with a conflict).
    pub async fn commit_customer_import(&self, import: PreparedImport) -> Result<usize> {
        self.write(move |tx| commit(tx, import)).await
    }

    /// Merges the search index into one segment. Each import batch adds a segment (and each
    /// API create a tiny one), which FTS5 merges only gradually; after a large import this
    /// makes substring searches about twice as fast. Takes a few seconds per million
    /// customers, in one writer job: run it after the import, not between batches.
    pub async fn optimize_search_index(&self) -> Result<()> {
        self.write(|tx| {
            tx.conn()
                .execute_batch("INSERT INTO customers_fts (customers_fts) VALUES ('optimize')")?;
            Ok(())
        })
        .await
    }

    /// Imports a batch of new customers in one transaction: both steps at once.
    pub async fn import_customers(
        &self,
        tenant: Uuid,
        actor: Actor,
        inputs: Vec<NewCustomer>,
    ) -> Result<usize> {
        let prepared = self.prepare_customer_import(tenant, actor, inputs).await?;
        self.commit_customer_import(prepared).await
    }
}
