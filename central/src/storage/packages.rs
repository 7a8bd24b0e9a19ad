//! Packages (service plans): CRUD with per-field stamps and audit; every change is queued
//! for all synced routers of the tenant.

use super::stamps::Stamps;
use super::sync::outbox::DownItem;
use super::{Result, Storage, StorageError, Tx, audit, from_ms, ms, new_id, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::FieldChange;
use easyisp_protocol::ledger::Actor;
use easyisp_protocol::merge::FieldValue;
use easyisp_protocol::money::Money;
use easyisp_protocol::package::{Burst, PackageView, Shaping, Speed, rate_limit};
use rusqlite::{Connection, params};
use uuid::Uuid;

/// A new package, already validated.
#[derive(Debug, Clone)]
pub struct PackageInput {
    pub name: String,
    pub price: Money,
    pub download_speed: Speed,
    pub upload_speed: Speed,
    pub validity_days: u32,
    pub data_limit: Option<u64>,
    pub session_time_limit: Option<u32>,
    pub burst: Option<Burst>,
}

/// A partial update; `Some(None)` clears an optional field.
#[derive(Debug, Clone, Default)]
pub struct PackagePatch {
    pub name: Option<String>,
    pub price: Option<Money>,
    pub download_speed: Option<Speed>,
    pub upload_speed: Option<Speed>,
    pub validity_days: Option<u32>,
    pub data_limit: Option<Option<u64>>,
    pub session_time_limit: Option<Option<u32>>,
    pub burst: Option<Option<Burst>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PackageRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub price: Money,
    pub download_speed: Speed,
    pub upload_speed: Speed,
    pub validity_days: u32,
    pub data_limit: Option<u64>,
    pub session_time_limit: Option<u32>,
    pub burst: Option<Burst>,
    pub created_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub stamps: Stamps,
}

const COLUMNS: &str =
    "id, tenant_id, name, price, download_kbps, upload_kbps, validity_days, data_limit,
    session_time_limit, burst, created_at, deleted_at, stamps";

impl PackageRow {
    fn read(row: &rusqlite::Row<'_>) -> Result<PackageRow> {
        let burst: Option<String> = row.get(9)?;
        Ok(PackageRow {
            id: parse_uuid(&row.get::<_, String>(0)?)?,
            tenant_id: parse_uuid(&row.get::<_, String>(1)?)?,
            name: row.get(2)?,
            price: Money::from_minor(row.get(3)?),
            download_speed: Speed::from_kbps(row.get(4)?),
            upload_speed: Speed::from_kbps(row.get(5)?),
            validity_days: row.get(6)?,
            data_limit: row.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u64),
            session_time_limit: row.get(8)?,
            burst: burst
                .map(|b| serde_json::from_str(&b))
                .transpose()
                .map_err(StorageError::corrupt)?,
            created_at: from_ms(row.get(10)?)?,
            deleted_at: row.get::<_, Option<i64>>(11)?.map(from_ms).transpose()?,
            stamps: Stamps::parse(&row.get::<_, String>(12)?)?,
        })
    }

    pub fn load(
        conn: &Connection,
        tenant: Uuid,
        id: Uuid,
        include_deleted: bool,
    ) -> Result<PackageRow> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM packages WHERE tenant_id = ?1 AND id = ?2"
        ))?;
        let mut rows = stmt.query(params![tenant.to_string(), id.to_string()])?;
        let row = match rows.next()? {
            Some(row) => PackageRow::read(row)?,
            None => return Err(StorageError::NotFound),
        };
        if row.deleted_at.is_some() && !include_deleted {
            return Err(StorageError::NotFound);
        }
        Ok(row)
    }

    pub fn view(&self) -> PackageView {
        PackageView {
            id: self.id,
            name: self.name.clone(),
            price: self.price,
            download_speed: self.download_speed,
            upload_speed: self.upload_speed,
            validity_days: self.validity_days,
            data_limit: self.data_limit,
            session_time_limit: self.session_time_limit,
            burst: self.burst,
            rate_limit: rate_limit(&Shaping {
                download: self.download_speed,
                upload: self.upload_speed,
                burst: self.burst,
            }),
            created_at: self.created_at,
        }
    }

    fn save(&self, conn: &Connection, insert: bool) -> Result<()> {
        let burst = self
            .burst
            .map(|b| serde_json::to_string(&b))
            .transpose()
            .map_err(StorageError::corrupt)?;
        let sql = if insert {
            "INSERT INTO packages (id, tenant_id, name, price, download_kbps, upload_kbps, validity_days,
                data_limit, session_time_limit, burst, created_at, deleted_at, stamps)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
        } else {
            "UPDATE packages SET name = ?3, price = ?4, download_kbps = ?5, upload_kbps = ?6,
                validity_days = ?7, data_limit = ?8, session_time_limit = ?9, burst = ?10,
                created_at = ?11, deleted_at = ?12, stamps = ?13
             WHERE id = ?1 AND tenant_id = ?2"
        };
        conn.prepare_cached(sql)?.execute(params![
            self.id.to_string(),
            self.tenant_id.to_string(),
            self.name,
            self.price.minor(),
            self.download_speed.kbps(),
            self.upload_speed.kbps(),
            self.validity_days,
            self.data_limit.map(|v| v.min(i64::MAX as u64) as i64),
            self.session_time_limit,
            burst,
            ms(self.created_at),
            self.deleted_at.map(ms),
            self.stamps.to_json(),
        ])?;
        Ok(())
    }
}

/// Compares two versions field by field: stamps every changed field and lists the changes.
fn diff(tx: &mut Tx<'_>, old: Option<&PackageRow>, new: &mut PackageRow) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    macro_rules! field {
        ($f:ident, $name:literal, $camel:literal) => {
            let before = old.map(|o| o.$f.audit_value());
            let after = new.$f.audit_value();
            if before.as_ref() != Some(&after) {
                let stamp = tx.stamp();
                new.stamps.set($name, stamp);
                if before.is_some() || !super::customer_row::is_empty_value(&after) {
                    changes.push(FieldChange {
                        field: $camel.into(),
                        old: before.unwrap_or(serde_json::Value::Null),
                        new: after,
                    });
                }
            }
        };
    }
    field!(name, "name", "name");
    field!(price, "price", "price");
    field!(download_speed, "download_speed", "downloadSpeed");
    field!(upload_speed, "upload_speed", "uploadSpeed");
    field!(validity_days, "validity_days", "validityDays");
    field!(data_limit, "data_limit", "dataLimit");
    field!(session_time_limit, "session_time_limit", "sessionTimeLimit");
    field!(burst, "burst", "burst");
    field!(created_at, "created_at", "createdAt");
    field!(deleted_at, "deleted_at", "deletedAt");
    changes
}

/// Customers (not deleted) on a package, from the maintained counts.
fn customers_on(conn: &Connection, tenant: Uuid, package: Uuid) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT COALESCE(SUM(n), 0) FROM customer_counts WHERE tenant_id = ?1 AND package_id = ?2")?
        .query_row(params![tenant.to_string(), package.to_string()], |r| r.get(0))?)
}

impl Storage {
    pub async fn create_package(
        &self,
        tenant: Uuid,
        actor: Actor,
        input: PackageInput,
    ) -> Result<PackageView> {
        self.write(move |tx| {
            let mut row = PackageRow {
                id: new_id(),
                tenant_id: tenant,
                name: input.name,
                price: input.price,
                download_speed: input.download_speed,
                upload_speed: input.upload_speed,
                validity_days: input.validity_days,
                data_limit: input.data_limit,
                session_time_limit: input.session_time_limit,
                burst: input.burst,
                created_at: tx.now(),
                deleted_at: None,
                stamps: Stamps::default(),
            };
            let changes = diff(tx, None, &mut row);
            row.save(tx.conn(), true)?;
            let at = tx.now();
            tx.audit(audit::event(
                tenant, "package", row.id, at, &actor, "create", changes,
            ));
            tx.sync_down(DownItem::Package { tenant, id: row.id });
            Ok(row.view())
        })
        .await
    }

    pub async fn list_packages(&self, tenant: Uuid) -> Result<Vec<PackageView>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM packages WHERE tenant_id = ?1 AND deleted_at IS NULL
                 ORDER BY created_at, id LIMIT 10000"
            ))?;
            let mut rows = stmt.query([tenant.to_string()])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(PackageRow::read(row)?.view());
            }
            Ok(out)
        })
        .await
    }

    pub async fn get_package(&self, tenant: Uuid, id: Uuid) -> Result<PackageView> {
        self.read(move |conn| Ok(PackageRow::load(conn, tenant, id, false)?.view()))
            .await
    }

    pub async fn update_package(
        &self,
        tenant: Uuid,
        actor: Actor,
        id: Uuid,
        patch: PackagePatch,
    ) -> Result<PackageView> {
        self.write(move |tx| {
            let old = PackageRow::load(tx.conn(), tenant, id, false)?;
            let mut new = old.clone();
            if let Some(v) = patch.name {
                new.name = v;
            }
            if let Some(v) = patch.price {
                new.price = v;
            }
            if let Some(v) = patch.download_speed {
                new.download_speed = v;
            }
            if let Some(v) = patch.upload_speed {
                new.upload_speed = v;
            }
            if let Some(v) = patch.validity_days {
                new.validity_days = v;
            }
            if let Some(v) = patch.data_limit {
                new.data_limit = v;
            }
            if let Some(v) = patch.session_time_limit {
                new.session_time_limit = v;
            }
            if let Some(v) = patch.burst {
                new.burst = v;
            }
            let changes = diff(tx, Some(&old), &mut new);
            if !changes.is_empty() {
                new.save(tx.conn(), false)?;
                let at = tx.now();
                tx.audit(audit::event(
                    tenant, "package", id, at, &actor, "update", changes,
                ));
                tx.sync_down(DownItem::Package { tenant, id });
            }
            Ok(new.view())
        })
        .await
    }

    /// Soft-deletes a package no customer uses (409 otherwise).
    pub async fn delete_package(&self, tenant: Uuid, actor: Actor, id: Uuid) -> Result<()> {
        self.write(move |tx| {
            let old = PackageRow::load(tx.conn(), tenant, id, false)?;
            let users = customers_on(tx.conn(), tenant, id)?;
            if users > 0 {
                return Err(StorageError::Conflict {
                    field: None,
                    message: format!("{users} customers still use this package; move them first"),
                });
            }
            let mut new = old.clone();
            new.deleted_at = Some(tx.now());
            let changes = diff(tx, Some(&old), &mut new);
            new.save(tx.conn(), false)?;
            let at = tx.now();
            tx.audit(audit::event(
                tenant, "package", id, at, &actor, "delete", changes,
            ));
            tx.sync_down(DownItem::Package { tenant, id });
            Ok(())
        })
        .await
    }
}
