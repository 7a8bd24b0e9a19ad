//! Customer mutations. Every one goes through [`commit_change`]: stamp the changed fields,
//! write the row, move the maintained counts, record the audit event and queue the
//! downstream sync change for the customer's routers (old and new) — all inside the
//! caller's transaction, written by `Tx::flush`.

use super::customer_row::{CustomerPatch, CustomerRow, NewCustomer};
use super::stamps::LazyStamps;
use super::{Result, Storage, StorageError, Tx, audit, counts, new_id};
use crate::secrets::Cipher;
use chrono::{DateTime, Duration, Utc};
use easyisp_protocol::customer::CustomerDetail;
use easyisp_protocol::ledger::Actor;
use easyisp_protocol::money::Money;
use rusqlite::{Connection, params};
use uuid::Uuid;

/// The one place a customer change is committed with its counts and audit event.
fn commit_change(
    tx: &mut Tx<'_>,
    actor: &Actor,
    action: &str,
    old: Option<&CustomerRow>,
    new: &mut CustomerRow,
) -> Result<()> {
    let changes = new.diff(tx, old)?;
    if old.is_some() && changes.is_empty() {
        return Ok(());
    }
    if old.is_some() {
        new.save(tx.conn())?;
    } else {
        new.insert(tx)?;
    }
    counts::apply(
        tx.conn(),
        new.tenant_id,
        old.and_then(counts::key_of),
        counts::key_of(new),
    )?;
    let at = tx.now();
    tx.audit(audit::event(
        new.tenant_id,
        "customer",
        new.id,
        at,
        actor,
        action,
        changes,
    ));
    queue_sync(tx, old, new);
    Ok(())
}

/// Queues the customer for the routers it was and is on (nothing when it has none).
pub(super) fn queue_sync(tx: &mut Tx<'_>, old: Option<&CustomerRow>, new: &CustomerRow) {
    let before = old.and_then(|o| o.router_id);
    if before.is_none() && new.router_id.is_none() {
        return;
    }
    for item in super::sync::outbox::customer_items(
        new.id,
        new.tenant_id,
        before,
        new.router_id,
        old.is_some(),
    ) {
        tx.sync_down(item);
    }
}

pub(super) fn check_references(
    conn: &Connection,
    tenant: Uuid,
    package: Option<Uuid>,
    router: Option<Uuid>,
) -> Result<()> {
    if let Some(package) = package {
        let ok = conn
            .prepare_cached(
                "SELECT 1 FROM packages WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?
            .exists(params![tenant.to_string(), package.to_string()])?;
        if !ok {
            return Err(StorageError::Invalid {
                field: "packageId",
                message: "no such package".into(),
            });
        }
    }
    if let Some(router) = router {
        let ok = conn
            .prepare_cached(
                "SELECT 1 FROM routers WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
            )?
            .exists(params![tenant.to_string(), router.to_string()])?;
        if !ok {
            return Err(StorageError::Invalid {
                field: "nasId",
                message: "no such router".into(),
            });
        }
    }
    Ok(())
}

fn username_taken(conn: &Connection, tenant: Uuid, username: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM customers WHERE tenant_id = ?1 AND username = ?2")?
        .exists(params![tenant.to_string(), username])?)
}

pub(super) fn duplicate() -> StorageError {
    StorageError::Conflict {
        field: Some("username"),
        message: "a customer with this username already exists in this tenant".into(),
    }
}

pub(super) fn validity_days(conn: &Connection, tenant: Uuid, package: Uuid) -> Result<u32> {
    Ok(conn
        .prepare_cached("SELECT validity_days FROM packages WHERE tenant_id = ?1 AND id = ?2")?
        .query_row(params![tenant.to_string(), package.to_string()], |r| {
            r.get(0)
        })?)
}

/// Builds a new customer's row created at `now` (password encrypted, default expiry from the
/// package's `validity` days).
pub(super) fn build_row(
    now: DateTime<Utc>,
    cipher: &Cipher,
    tenant: Uuid,
    input: NewCustomer,
    validity: Option<u32>,
) -> Result<CustomerRow> {
    let expires_at = match (input.expires_at, validity) {
        (Some(at), _) => Some(at),
        (None, Some(days)) => Some(now + Duration::days(i64::from(days))),
        (None, None) => None,
    };
    let id = new_id();
    Ok(CustomerRow {
        rowid: 0,
        id,
        tenant_id: tenant,
        username: input.username,
        password_enc: Some(cipher.encrypt(&CustomerRow::aad(tenant, id), &input.password)?),
        name: input.name,
        email: input.email,
        phone: input.phone,
        connection_type: input.connection_type,
        package_id: input.package_id,
        router_id: input.router_id,
        expires_at,
        location: input.location,
        latitude: input.latitude,
        longitude: input.longitude,
        apartment_number: input.apartment_number,
        house_number: input.house_number,
        suspended: false,
        disabled: input.disabled,
        auto_renew: input.auto_renew,
        static_ip: input.static_ip,
        mac_bindings: input.mac_bindings,
        tags: input.tags,
        last_ip: None,
        last_mac: None,
        balance: Money::ZERO,
        total_spent: Money::ZERO,
        created_at: now,
        deleted_at: None,
        anonymized_at: None,
        stamps: LazyStamps::default(),
        package: None,
        router: None,
    })
}

/// Inserts one customer (the API's create).
pub(super) fn insert_new(
    tx: &mut Tx<'_>,
    cipher: &Cipher,
    tenant: Uuid,
    actor: &Actor,
    input: NewCustomer,
) -> Result<CustomerRow> {
    check_references(tx.conn(), tenant, input.package_id, input.router_id)?;
    if username_taken(tx.conn(), tenant, &input.username)? {
        return Err(duplicate());
    }
    let validity = match (input.expires_at, input.package_id) {
        (None, Some(package)) => Some(validity_days(tx.conn(), tenant, package)?),
        _ => None,
    };
    let mut row = build_row(tx.now(), cipher, tenant, input, validity)?;
    commit_change(tx, actor, "create", None, &mut row)?;
    Ok(row)
}

/// Replaces personal data with placeholders and wipes the password; the ledger keeps its
/// entries under the customer's id (pseudonymised) and the audit trail loses its values.
fn anonymise(tx: &mut Tx<'_>, actor: &Actor, old: &CustomerRow) -> Result<()> {
    let mut new = old.clone();
    new.username = format!("deleted-{}", old.id.simple());
    new.password_enc = None;
    new.name = "Anonymised customer".into();
    new.email = None;
    new.phone = None;
    new.location = None;
    new.latitude = None;
    new.longitude = None;
    new.apartment_number = None;
    new.house_number = None;
    new.static_ip = None;
    new.mac_bindings = Vec::new();
    new.tags = Vec::new();
    new.last_ip = None;
    new.last_mac = None;
    new.deleted_at = old.deleted_at.or(Some(tx.now()));
    new.anonymized_at = Some(tx.now());
    audit::redact_entity(tx.conn(), old.tenant_id, old.id)?;
    commit_change(tx, actor, "anonymize", Some(old), &mut new)?;
    // The event's old values are the personal data being erased: keep only field names.
    if let Some(event) = tx.last_audit_mut() {
        for change in &mut event.changes {
            if !change.old.is_null() {
                change.old = serde_json::Value::String("redacted".into());
            }
        }
    }
    Ok(())
}

impl Storage {
    pub async fn create_customer(
        &self,
        tenant: Uuid,
        actor: Actor,
        input: NewCustomer,
    ) -> Result<CustomerDetail> {
        let cipher = self.cipher();
        // Adds one customer and touches no other: its search entry joins the group's.
        self.write_adding_customers(move |tx| {
            let row = insert_new(tx, &cipher, tenant, &actor, input)?;
            let row = CustomerRow::load(tx.conn(), tenant, row.id, false)?;
            Ok(row.detail(tx.now()))
        })
        .await
    }

    /// Up to `n` live customer ids spread over the tenant (benchmarks pick targets from it).
    pub async fn sample_customer_ids(&self, tenant: Uuid, n: usize) -> Result<Vec<Uuid>> {
        self.read(move |conn| {
            let total: i64 = conn
                .prepare_cached("SELECT COALESCE(MAX(rowid), 0) FROM customers")?
                .query_row([], |r| r.get(0))?;
            let step = (total / n.max(1) as i64).max(1);
            let mut stmt = conn.prepare_cached(
                "SELECT id FROM customers WHERE rowid % ?2 = 0 AND tenant_id = ?1 AND deleted_at IS NULL LIMIT ?3",
            )?;
            let ids = stmt
                .query_map(params![tenant.to_string(), step, n as i64], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?;
            ids.iter().map(|id| super::parse_uuid(id)).collect()
        })
        .await
    }

    pub async fn get_customer(
        &self,
        tenant: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<CustomerDetail> {
        self.read(move |conn| Ok(CustomerRow::load(conn, tenant, id, false)?.detail(now)))
            .await
    }

    /// Applies a partial update (a new password is encrypted here) and returns the result.
    pub async fn update_customer(
        &self,
        tenant: Uuid,
        actor: Actor,
        id: Uuid,
        mut patch: CustomerPatch,
    ) -> Result<CustomerDetail> {
        let cipher = self.cipher();
        self.write(move |tx| {
            let old = CustomerRow::load(tx.conn(), tenant, id, false)?;
            check_references(
                tx.conn(),
                tenant,
                patch.package_id.flatten(),
                patch.router_id.flatten(),
            )?;
            if let Some(username) = patch.username.as_ref().filter(|u| **u != old.username)
                && username_taken(tx.conn(), tenant, username)?
            {
                return Err(duplicate());
            }
            let mut new = old.clone();
            if let Some(password) = patch.password.take() {
                new.password_enc = Some(cipher.encrypt(&CustomerRow::aad(tenant, id), &password)?);
            }
            new.apply(patch);
            commit_change(tx, &actor, "update", Some(&old), &mut new)?;
            Ok(CustomerRow::load(tx.conn(), tenant, id, false)?.detail(tx.now()))
        })
        .await
    }

    /// Runs `change` on a live customer's row and commits it under `action`.
    pub async fn change_customer<F>(
        &self,
        tenant: Uuid,
        actor: Actor,
        id: Uuid,
        action: &'static str,
        change: F,
    ) -> Result<CustomerDetail>
    where
        F: FnOnce(&mut CustomerPatch) + Send + 'static,
    {
        self.write(move |tx| {
            let old = CustomerRow::load(tx.conn(), tenant, id, false)?;
            let mut patch = CustomerPatch::default();
            change(&mut patch);
            check_references(
                tx.conn(),
                tenant,
                patch.package_id.flatten(),
                patch.router_id.flatten(),
            )?;
            let mut new = old.clone();
            new.apply(patch);
            commit_change(tx, &actor, action, Some(&old), &mut new)?;
            Ok(CustomerRow::load(tx.conn(), tenant, id, false)?.detail(tx.now()))
        })
        .await
    }

    /// Soft delete: sets `deletedAt`; the row stays for audit and restore.
    pub async fn delete_customer(&self, tenant: Uuid, actor: Actor, id: Uuid) -> Result<()> {
        self.write(move |tx| {
            let old = CustomerRow::load(tx.conn(), tenant, id, false)?;
            let mut new = old.clone();
            new.deleted_at = Some(tx.now());
            commit_change(tx, &actor, "delete", Some(&old), &mut new)
        })
        .await
    }

    /// Undoes a soft delete (not after anonymisation).
    pub async fn restore_customer(
        &self,
        tenant: Uuid,
        actor: Actor,
        id: Uuid,
    ) -> Result<CustomerDetail> {
        self.write(move |tx| {
            let old = CustomerRow::load(tx.conn(), tenant, id, true)?;
            if old.anonymized_at.is_some() {
                return Err(StorageError::Conflict {
                    field: None,
                    message: "this customer was anonymised and cannot be restored".into(),
                });
            }
            if old.deleted_at.is_some() {
                let mut new = old.clone();
                new.deleted_at = None;
                commit_change(tx, &actor, "restore", Some(&old), &mut new)?;
            }
            Ok(CustomerRow::load(tx.conn(), tenant, id, false)?.detail(tx.now()))
        })
        .await
    }

    /// Anonymises a customer at once (soft-deleting it if needed).
    pub async fn anonymize_customer(&self, tenant: Uuid, actor: Actor, id: Uuid) -> Result<()> {
        self.write(move |tx| {
            let old = CustomerRow::load(tx.conn(), tenant, id, true)?;
            if old.anonymized_at.is_some() {
                return Ok(());
            }
            anonymise(tx, &actor, &old)
        })
        .await
    }

    /// Anonymises up to `limit` customers soft-deleted before `cutoff` (any tenant): the
    /// retention job. Returns how many it did.
    pub async fn anonymize_deleted_before(
        &self,
        cutoff: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize> {
        self.write(move |tx| {
            let due: Vec<(String, String)> = tx
                .conn()
                .prepare_cached(
                    "SELECT tenant_id, id FROM customers INDEXED BY customers_deleted
                     WHERE deleted_at IS NOT NULL AND anonymized_at IS NULL AND deleted_at < ?1 LIMIT ?2",
                )?
                .query_map(params![super::ms(cutoff), limit as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let actor = super::system_actor("retention");
            for (tenant, id) in &due {
                let (tenant, id) = (super::parse_uuid(tenant)?, super::parse_uuid(id)?);
                let old = CustomerRow::load(tx.conn(), tenant, id, true)?;
                anonymise(tx, &actor, &old)?;
            }
            Ok(due.len())
        })
        .await
    }
}
