//! The append-only part of an agent's upstream batch: ledger entries (insert if neither id
//! nor idempotency key is known, moving balance and total spent), sessions (per-session
//! maximum) and audit events (insert if absent, authored by the agent). Called by `apply`
//! inside the batch's transaction, one savepoint per change.

use super::apply::{Applied, Ctx, Refusal, customer_router, reject};
use super::outbox::{DownEntity, DownItem};
use crate::storage::{Tx, audit, ledger, sessions};
use easyisp_protocol::audit::{AuditEvent, FieldChange};
use easyisp_protocol::ledger::{LedgerEntry, LedgerKind};
use easyisp_protocol::merge::FieldValue;
use easyisp_protocol::session::SessionRecord;
use rusqlite::{OptionalExtension, params};
use serde_json::Value;

pub(super) fn apply_ledger(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    entry: LedgerEntry,
) -> std::result::Result<Applied, Refusal> {
    if entry.tenant_id != ctx.tenant {
        return reject("ledger entry of another tenant");
    }
    match customer_router(tx, ctx.tenant, entry.customer_id)? {
        None => return reject("ledger entry of an unknown customer"),
        Some(router) if router != Some(ctx.router) => {
            return reject("ledger entry of a customer of another router");
        }
        Some(_) => {}
    }
    let known: Option<(String, String)> = tx
        .conn()
        .prepare_cached("SELECT tenant_id, customer_id FROM ledger WHERE id = ?1")?
        .query_row([entry.id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((tenant, customer)) = known {
        if tenant == ctx.tenant.to_string() && customer == entry.customer_id.to_string() {
            return Ok(Applied::Duplicate);
        }
        return reject("a ledger entry with this id already exists");
    }
    if let Some(key) = &entry.idempotency_key {
        let used = tx
            .conn()
            .prepare_cached(
                "SELECT 1 FROM ledger WHERE tenant_id = ?1 AND customer_id = ?2 AND idempotency_key = ?3",
            )?
            .exists(params![ctx.tenant.to_string(), entry.customer_id.to_string(), key])?;
        if used {
            return Ok(Applied::Duplicate);
        }
    }
    let minor = entry.amount.minor();
    // A free package's renewal charges zero: allowed.
    let sign_ok = match entry.kind {
        LedgerKind::Recharge | LedgerKind::Refund => minor >= 0,
        LedgerKind::PackageCharge => minor <= 0,
        LedgerKind::Adjustment => true,
    };
    if !sign_ok {
        return reject("the amount's sign does not fit the entry's kind");
    }
    let (balance, spent): (i64, i64) = tx
        .conn()
        .prepare_cached(
            "SELECT balance, total_spent FROM customers WHERE tenant_id = ?1 AND id = ?2",
        )?
        .query_row(
            params![ctx.tenant.to_string(), entry.customer_id.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
    let spent_delta = match entry.kind {
        LedgerKind::PackageCharge | LedgerKind::Refund => -minor,
        LedgerKind::Recharge | LedgerKind::Adjustment => 0,
    };
    let (Some(new_balance), Some(new_spent)) =
        (balance.checked_add(minor), spent.checked_add(spent_delta))
    else {
        return reject("the balance would overflow");
    };
    ledger::insert_entry(tx.conn(), &entry)?;
    tx.conn()
        .prepare_cached(
            "UPDATE customers SET balance = ?3, total_spent = ?4 WHERE tenant_id = ?1 AND id = ?2",
        )?
        .execute(params![
            ctx.tenant.to_string(),
            entry.customer_id.to_string(),
            new_balance,
            new_spent
        ])?;
    let money = |m: i64| easyisp_protocol::money::Money::from_minor(m).audit_value();
    let mut changed = vec![FieldChange {
        field: "walletBalance".into(),
        old: money(balance),
        new: money(new_balance),
    }];
    if spent_delta != 0 {
        changed.push(FieldChange {
            field: "totalSpent".into(),
            old: money(spent),
            new: money(new_spent),
        });
    }
    changed.push(FieldChange {
        field: "ledgerEntry".into(),
        old: Value::Null,
        new: Value::String(entry.id.to_string()),
    });
    let action = match entry.kind {
        LedgerKind::Recharge => "recharge",
        LedgerKind::PackageCharge => "charge",
        LedgerKind::Refund => "refund",
        LedgerKind::Adjustment => "adjustment",
    };
    let at = tx.now();
    tx.audit(audit::event(
        ctx.tenant,
        "customer",
        entry.customer_id,
        at,
        &ctx.actor,
        action,
        changed,
    ));
    tx.sync_down(DownItem::One {
        router: ctx.router,
        entity: DownEntity::Ledger,
        id: entry.id,
    });
    Ok(Applied::New)
}

pub(super) fn apply_session(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    session: SessionRecord,
) -> std::result::Result<Applied, Refusal> {
    if session.tenant_id != ctx.tenant {
        return reject("session of another tenant");
    }
    if session.router_id != ctx.router {
        return reject("session of another router");
    }
    if let Some(customer) = session.customer_id
        && customer_router(tx, ctx.tenant, customer)?.is_none()
    {
        return reject("session of an unknown customer");
    }
    let owner: Option<(String, String)> = tx
        .conn()
        .prepare_cached("SELECT tenant_id, router_id FROM sessions WHERE id = ?1")?
        .query_row([session.id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    if let Some((tenant, router)) = owner
        && (tenant != ctx.tenant.to_string() || router != ctx.router.to_string())
    {
        return reject("a session with this id belongs to another router");
    }
    sessions::upsert(tx.conn(), session)?;
    Ok(Applied::New)
}

pub(super) fn apply_audit(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut event: AuditEvent,
) -> std::result::Result<Applied, Refusal> {
    if event.tenant_id != ctx.tenant {
        return reject("audit event of another tenant");
    }
    match event.entity.as_str() {
        "customer" => match customer_router(tx, ctx.tenant, event.entity_id)? {
            Some(Some(router)) if router == ctx.router => {}
            Some(_) => return reject("audit event of a customer of another router"),
            None => return reject("audit event of an unknown customer"),
        },
        "router" if event.entity_id == ctx.router => {}
        _ => return reject("a site records audit events of its customers and its router only"),
    }
    let known = tx
        .conn()
        .prepare_cached("SELECT 1 FROM audit WHERE id = ?1")?
        .exists([event.id.to_string()])?;
    if known {
        return Ok(Applied::Duplicate);
    }
    // Whatever the event says, its author is this router's agent.
    event.actor = ctx.actor.clone();
    audit::insert(tx.conn(), &event)?;
    Ok(Applied::New)
}
