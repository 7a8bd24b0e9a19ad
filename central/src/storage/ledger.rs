//! The ledger: append-only money entries with UUIDs and optional idempotency keys. The
//! customer row's `balance` and `total_spent` are sums of the ledger kept in the same
//! transaction as each entry (so reads need no SUM); payments are the ledger's recharges.
//! Each entry is queued for the customer's router in the same transaction.

use super::customer_row::CustomerRow;
use super::sync::outbox::{DownEntity, DownItem};
use super::{Result, Storage, StorageError, actor_json, audit, from_ms, ms, new_id, parse_uuid};
use easyisp_protocol::audit::FieldChange;
use easyisp_protocol::ledger::{Actor, LedgerEntry, LedgerKind, Payment};
use easyisp_protocol::merge::FieldValue;
use easyisp_protocol::money::Money;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Recharge {
    pub amount: Money,
    pub method: Option<String>,
    pub transaction_id: Option<String>,
    pub description: Option<String>,
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct RechargeOutcome {
    pub new_balance: Money,
    /// The idempotency key had been used: nothing new was written.
    pub replayed: bool,
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentsPage {
    pub payments: Vec<Payment>,
    pub total: u64,
    pub total_paid: Money,
}

impl Storage {
    /// Adds a recharge entry and the balance it produces, or, for a known idempotency key,
    /// returns the current balance without writing anything.
    pub async fn recharge(
        &self,
        tenant: Uuid,
        actor: Actor,
        customer: Uuid,
        recharge: Recharge,
    ) -> Result<RechargeOutcome> {
        self.write(move |tx| {
            let mut row = CustomerRow::load(tx.conn(), tenant, customer, false)?;
            if let Some(key) = &recharge.idempotency_key {
                let seen = tx
                    .conn()
                    .prepare_cached(
                        "SELECT 1 FROM ledger WHERE tenant_id = ?1 AND customer_id = ?2 AND idempotency_key = ?3",
                    )?
                    .exists(params![tenant.to_string(), customer.to_string(), key])?;
                if seen {
                    return Ok(RechargeOutcome { new_balance: row.balance, replayed: true });
                }
            }
            let new_balance = row.balance.checked_add(recharge.amount).ok_or(StorageError::Invalid {
                field: "amount",
                message: "the balance would overflow".into(),
            })?;
            let id = new_id();
            tx.conn()
                .prepare_cached(
                    "INSERT INTO ledger (id, tenant_id, customer_id, kind, amount, method, transaction_id,
                        description, idempotency_key, actor, created_at)
                     VALUES (?1, ?2, ?3, 'RECHARGE', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    id.to_string(),
                    tenant.to_string(),
                    customer.to_string(),
                    recharge.amount.minor(),
                    recharge.method,
                    recharge.transaction_id,
                    recharge.description,
                    recharge.idempotency_key,
                    actor_json(&actor),
                    ms(tx.now()),
                ])?;
            tx.conn()
                .prepare_cached("UPDATE customers SET balance = ?3 WHERE tenant_id = ?1 AND id = ?2")?
                .execute(params![tenant.to_string(), customer.to_string(), new_balance.minor()])?;
            let changes = vec![
                FieldChange { field: "walletBalance".into(), old: row.balance.audit_value(), new: new_balance.audit_value() },
                FieldChange {
                    field: "ledgerEntry".into(),
                    old: serde_json::Value::Null,
                    new: serde_json::Value::String(id.to_string()),
                },
            ];
            row.balance = new_balance;
            let at = tx.now();
            tx.audit(audit::event(tenant, "customer", customer, at, &actor, "recharge", changes));
            if let Some(router) = row.router_id {
                tx.sync_down(DownItem::One { router, entity: DownEntity::Ledger, id });
            }
            Ok(RechargeOutcome { new_balance, replayed: false })
        })
        .await
    }

    /// A customer's payments (recharges), newest first, with their count and sum.
    pub async fn payments(
        &self,
        tenant: Uuid,
        customer: Uuid,
        page: u32,
        page_size: u32,
    ) -> Result<PaymentsPage> {
        self.read(move |conn| {
            CustomerRow::load(conn, tenant, customer, false)?;
            let (total, paid): (i64, i64) = conn
                .prepare_cached(
                    "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM ledger
                     WHERE tenant_id = ?1 AND customer_id = ?2 AND kind = 'RECHARGE'",
                )?
                .query_row(params![tenant.to_string(), customer.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let offset = i64::from(page.saturating_sub(1)) * i64::from(page_size);
            let mut stmt = conn.prepare_cached(
                "SELECT id, amount, method, transaction_id, description, created_at FROM ledger
                 WHERE tenant_id = ?1 AND customer_id = ?2 AND kind = 'RECHARGE'
                 ORDER BY created_at DESC, id DESC LIMIT ?3 OFFSET ?4",
            )?;
            let mut rows = stmt.query(params![
                tenant.to_string(),
                customer.to_string(),
                page_size,
                offset
            ])?;
            let mut payments = Vec::new();
            while let Some(row) = rows.next()? {
                payments.push(Payment {
                    id: parse_uuid(&row.get::<_, String>(0)?)?,
                    amount: Money::from_minor(row.get(1)?),
                    method: row
                        .get::<_, Option<String>>(2)?
                        .unwrap_or_else(|| "CASH".into()),
                    status: "COMPLETED".into(),
                    transaction_id: row.get(3)?,
                    description: row.get(4)?,
                    created_at: from_ms(row.get(5)?)?,
                });
            }
            Ok(PaymentsPage {
                payments,
                total: total.max(0) as u64,
                total_paid: Money::from_minor(paid),
            })
        })
        .await
    }

    /// The ledger kind names stored in the `kind` column.
    pub fn ledger_kind_name(kind: LedgerKind) -> &'static str {
        match kind {
            LedgerKind::Recharge => "RECHARGE",
            LedgerKind::PackageCharge => "PACKAGE_CHARGE",
            LedgerKind::Refund => "REFUND",
            LedgerKind::Adjustment => "ADJUSTMENT",
        }
    }

    /// Whether an idempotency key was already used for the customer.
    pub async fn ledger_key_used(&self, tenant: Uuid, customer: Uuid, key: String) -> Result<bool> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM ledger WHERE tenant_id = ?1 AND customer_id = ?2 AND idempotency_key = ?3")?
                .query_row(params![tenant.to_string(), customer.to_string(), key], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }
}

/// The inverse of [`Storage::ledger_kind_name`].
pub(super) fn kind_from_name(name: &str) -> Option<LedgerKind> {
    [
        LedgerKind::Recharge,
        LedgerKind::PackageCharge,
        LedgerKind::Refund,
        LedgerKind::Adjustment,
    ]
    .into_iter()
    .find(|k| Storage::ledger_kind_name(*k) == name)
}

/// One ledger entry of `tenant`, as replicated.
pub(super) fn entry(conn: &rusqlite::Connection, tenant: Uuid, id: Uuid) -> Result<LedgerEntry> {
    let mut stmt = conn.prepare_cached(
        "SELECT customer_id, kind, amount, method, transaction_id, description, idempotency_key,
            actor, created_at FROM ledger WHERE tenant_id = ?1 AND id = ?2",
    )?;
    let mut rows = stmt.query(params![tenant.to_string(), id.to_string()])?;
    let Some(row) = rows.next()? else {
        return Err(StorageError::NotFound);
    };
    let kind: String = row.get(1)?;
    let actor: String = row.get(7)?;
    Ok(LedgerEntry {
        id,
        tenant_id: tenant,
        customer_id: parse_uuid(&row.get::<_, String>(0)?)?,
        kind: kind_from_name(&kind)
            .ok_or_else(|| StorageError::corrupt(format!("ledger kind {kind:?}")))?,
        amount: Money::from_minor(row.get(2)?),
        method: row.get(3)?,
        transaction_id: row.get(4)?,
        description: row.get(5)?,
        idempotency_key: row.get(6)?,
        actor: serde_json::from_str(&actor).map_err(StorageError::corrupt)?,
        created_at: from_ms(row.get(8)?)?,
    })
}

/// Inserts an entry written elsewhere (an agent's renewal) and moves the customer's balance
/// and total spent with it. The caller has checked that neither its id nor its idempotency
/// key is known.
pub(super) fn insert_entry(conn: &rusqlite::Connection, entry: &LedgerEntry) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO ledger (id, tenant_id, customer_id, kind, amount, method, transaction_id,
            description, idempotency_key, actor, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        entry.id.to_string(),
        entry.tenant_id.to_string(),
        entry.customer_id.to_string(),
        Storage::ledger_kind_name(entry.kind),
        entry.amount.minor(),
        entry.method,
        entry.transaction_id,
        entry.description,
        entry.idempotency_key,
        actor_json(&entry.actor),
        ms(entry.created_at),
    ])?;
    Ok(())
}
