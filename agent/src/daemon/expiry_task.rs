//! The expiry task: sleeps until the next `expiresAt` in the replica (not a cron), then
//! charges due auto-renewals and asks for an immediate reconcile, which cuts off whoever
//! expired. Re-plans after changes, at most every `CHANGE_SETTLE`. Auto-renewal runs only
//! while the clock is trusted.

use super::timekeeping::{expiry_inputs, read_clock};
use super::{Shared, state};
use crate::expiry::plan::{Renewal, next_wake, renewals};
use crate::replica::store;
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::{AuditEvent, FieldChange};
use easyisp_protocol::customer::CustomerRecord;
use easyisp_protocol::envelope::{ChangeBody, ClockState};
use easyisp_protocol::ledger::{Actor, ActorKind, LedgerEntry, LedgerKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::{Money, NodeId};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Even with nothing due, wake this often to persist clock trust and catch clock changes.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// After a change notice, wait this long before re-planning, so a burst of changes costs one
/// pass (each reads every customer; a sync catch-up applies dozens of batches a second). A
/// deadline still wakes the task on time, and the change itself already triggered a
/// reconcile, which cuts off whoever it made expired.
const CHANGE_SETTLE: Duration = Duration::from_millis(250);

pub async fn run(shared: Shared, cancel: CancellationToken) {
    let mut last_pass: Option<DateTime<Utc>> = None;
    loop {
        let now = Utc::now();
        let since = last_pass.replace(now);
        let wake = match pass(&shared, now, since).await {
            Ok(wake) => wake,
            Err(e) => {
                tracing::error!(error = %e, "expiry pass failed; retrying in 5 s");
                Some(now + chrono::Duration::seconds(5))
            }
        };
        let sleep = wake
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
        let deadline = tokio::time::Instant::now() + sleep;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.expiry_wake.notified() => {
                let settle = (tokio::time::Instant::now() + CHANGE_SETTLE).min(deadline);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep_until(settle) => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                // A deadline passed: somebody may have expired. Renewals run first (next
                // loop turn), then the reconcile cuts off the rest.
            }
        }
    }
}

/// Renews what is due, asks for a reconcile if anything expired since the previous pass
/// (`since`; however late this pass woke), and returns the next wake-up.
async fn pass(
    shared: &Shared,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> anyhow::Result<Option<DateTime<Utc>>> {
    let synchronised = shared.clock_synchronised();
    let router = shared.config.router_id;
    let (inputs, clock) = shared
        .replica
        .read(move |conn| {
            let (clock, _) = read_clock(conn, now, synchronised)?;
            Ok((expiry_inputs(conn, router, now)?, clock))
        })
        .await?;
    if clock == ClockState::Synchronised {
        let due = renewals(&inputs, now);
        if !due.is_empty() {
            let node = NodeId::from_uuid(shared.config.router_id);
            let (tenant, router) = (shared.config.tenant_id, shared.config.router_id);
            let count = due.len();
            shared
                .replica
                .write(move |tx| apply_renewals(tx, &due, tenant, router, node, now))
                .await?;
            tracing::info!(customers = count, "auto-renewed customers at expiry");
            shared.replica_changed();
            shared.outbox_changed();
        }
        shared
            .replica
            .write(move |tx| state::trust_until(tx, now))
            .await?;
    }
    let expired_now = inputs.iter().any(|c| {
        !c.cut_for_other_reason
            && c.expires_at
                .is_some_and(|at| at <= now && since.is_none_or(|since| at > since))
    });
    if expired_now {
        shared.reconcile_now.notify_one();
    }
    Ok(next_wake(&inputs, now))
}

/// Charges each renewal once (ledger idempotency key) and extends the customer, with the
/// ledger entry, the customer change and an audit event in the upstream outbox, all in the
/// caller's transaction.
fn apply_renewals(
    tx: &rusqlite::Transaction<'_>,
    due: &[Renewal],
    tenant: Uuid,
    router: Uuid,
    node: NodeId,
    now: DateTime<Utc>,
) -> crate::replica::Result<()> {
    let actor = Actor {
        kind: ActorKind::Agent,
        id: Some(router),
        name: "agent".into(),
    };
    for renewal in due {
        let entry = LedgerEntry {
            id: Uuid::now_v7(),
            tenant_id: tenant,
            customer_id: renewal.customer,
            kind: LedgerKind::PackageCharge,
            amount: renewal.charge.checked_neg().unwrap_or(Money::ZERO),
            method: Some("WALLET".into()),
            transaction_id: None,
            description: Some(format!(
                "auto-renewal from {}",
                renewal.period_start.to_rfc3339()
            )),
            idempotency_key: Some(renewal.idempotency_key.clone()),
            actor: actor.clone(),
            created_at: now,
        };
        if !store::insert_ledger(tx, &entry)? {
            continue; // already charged for this period
        }
        let stamp = state::tick(tx, node, now)?;
        let mut change = CustomerRecord::empty(renewal.customer, tenant);
        change.expires_at = Some(Lww::new(Some(renewal.new_expires_at), stamp));
        store::merge_customer(tx, &change)?;
        let audit = AuditEvent {
            id: Uuid::now_v7(),
            tenant_id: tenant,
            entity: "customer".into(),
            entity_id: renewal.customer,
            at: now,
            actor: actor.clone(),
            action: "renew".into(),
            changes: vec![FieldChange {
                field: "expiresAt".into(),
                old: renewal.period_start.to_rfc3339().into(),
                new: renewal.new_expires_at.to_rfc3339().into(),
            }],
        };
        store::enqueue(tx, &ChangeBody::Ledger(entry), now)?;
        store::enqueue(tx, &ChangeBody::Customer(Box::new(change)), now)?;
        store::enqueue(tx, &ChangeBody::Audit(audit), now)?;
    }
    Ok(())
}
