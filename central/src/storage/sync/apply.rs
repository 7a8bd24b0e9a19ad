//! Applying an agent's upstream batch (`up/changes`) in one write transaction: epoch and
//! cursor checks, then each new change under its own savepoint so a change central cannot
//! apply is rejected alone, then `up_applied`. The caller acks after the commit.
//!
//! Rules (docs/sync.md "Upstream"): customers merge per field by HLC (remote stamps observed
//! in central's clock unless too far ahead of it; an agent's losing write is an audit event
//! `sync-conflict`; what a site changed shows in the customer's audit with the agent as
//! actor; maintained counts follow); ledger entries are inserted if neither their id nor
//! their idempotency key is known, moving balance and total spent; sessions keep the
//! per-session maximum; audit events are inserted if absent. Packages, and customers of
//! another router or tenant, are rejected.

use super::agent_actor;
use super::convert::{blank_row, changes, check_row, lost_writes, write_into_row};
use super::entries;
use super::presence::live_router_tenant;
use crate::secrets::Cipher;
use crate::storage::customer_row::CustomerRow;
use crate::storage::records::record_of_row;
use crate::storage::stamps::LazyStamps;
use crate::storage::{Result, Storage, StorageError, Tx, audit, counts, customers, parse_uuid};
use easyisp_protocol::CustomerRecord;
use easyisp_protocol::audit::FieldChange;
use easyisp_protocol::customer::SyncedSecret;
use easyisp_protocol::envelope::{Change, ChangeBody, Rejected};
use easyisp_protocol::ledger::Actor;
use rusqlite::{OptionalExtension, params};
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use uuid::Uuid;

/// An upstream batch as received, its changes still unparsed so that one change this
/// version cannot read is rejected alone.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawBatch {
    pub v: u32,
    pub router: Uuid,
    pub epoch: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub changes: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpOutcome {
    /// No such router (or deleted): ignored.
    Unknown,
    /// The batch is of another replica epoch than central knows: ignored until the agent's
    /// birth tells central about it.
    WrongEpoch { known: Option<String> },
    /// Changes are missing before this batch: ack `applied` and ask to resend after it.
    Gap { applied: u64 },
    Applied {
        acked_through: u64,
        applied: usize,
        duplicates: usize,
        rejected: Vec<Rejected>,
    },
}

/// Why one change was not applied.
pub(super) enum Refusal {
    /// The change is invalid or not allowed for this agent: rejected, the stream goes on.
    Reject(String),
    /// Central itself failed (disk, database): the whole batch fails and is not acked.
    Fail(StorageError),
}

impl From<StorageError> for Refusal {
    fn from(e: StorageError) -> Refusal {
        match e {
            StorageError::Invalid { field, message } => {
                Refusal::Reject(format!("{field}: {message}"))
            }
            StorageError::Conflict { message, .. } => Refusal::Reject(message),
            StorageError::NotFound => {
                Refusal::Reject("refers to something central does not have".into())
            }
            StorageError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Refusal::Reject(format!("violates a constraint: {f}"))
            }
            other => Refusal::Fail(other),
        }
    }
}

impl From<rusqlite::Error> for Refusal {
    fn from(e: rusqlite::Error) -> Refusal {
        StorageError::from(e).into()
    }
}

impl From<crate::secrets::SecretsError> for Refusal {
    fn from(e: crate::secrets::SecretsError) -> Refusal {
        Refusal::Fail(e.into())
    }
}

pub(super) fn reject<T>(reason: impl Into<String>) -> std::result::Result<T, Refusal> {
    Err(Refusal::Reject(reason.into()))
}

/// Whether a change wrote something or was already known.
pub(super) enum Applied {
    New,
    Duplicate,
}

pub(super) struct Ctx {
    pub(super) router: Uuid,
    pub(super) tenant: Uuid,
    pub(super) actor: Actor,
    cipher: Arc<Cipher>,
    /// Set when a stamp of this batch was too far ahead of central's clock.
    clock_ahead: std::cell::Cell<Option<String>>,
}

impl Storage {
    /// Applies an agent's batch (see the module docs) in one transaction.
    pub async fn apply_up_batch(&self, router: Uuid, batch: RawBatch) -> Result<UpOutcome> {
        let cipher = self.cipher();
        self.write(move |tx| apply_batch(tx, cipher, router, batch))
            .await
    }
}

fn apply_batch(
    tx: &mut Tx<'_>,
    cipher: Arc<Cipher>,
    router: Uuid,
    batch: RawBatch,
) -> Result<UpOutcome> {
    let Some(tenant) = live_router_tenant(tx.conn(), router)? else {
        return Ok(UpOutcome::Unknown);
    };
    let state: Option<(Option<String>, i64, String)> = tx
        .conn()
        .prepare_cached(
            "SELECT s.epoch, s.up_applied, r.name FROM sync_routers s
             JOIN routers r ON r.id = s.router_id WHERE s.router_id = ?1",
        )?
        .query_row([router.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let Some((known, applied, name)) = state else {
        return Ok(UpOutcome::WrongEpoch { known: None });
    };
    if known.as_deref() != Some(batch.epoch.as_str()) {
        return Ok(UpOutcome::WrongEpoch { known });
    }
    let applied = applied.max(0) as u64;
    if batch.first_seq > applied + 1 {
        return Ok(UpOutcome::Gap { applied });
    }
    if batch.last_seq <= applied {
        return Ok(UpOutcome::Applied {
            acked_through: applied,
            applied: 0,
            duplicates: batch.changes.len(),
            rejected: Vec::new(),
        });
    }
    tx.suppress_echo(router);
    let ctx = Ctx {
        router,
        tenant,
        actor: agent_actor(router, &name),
        cipher,
        clock_ahead: std::cell::Cell::new(None),
    };
    let (mut done, mut duplicates, mut rejected) = (0, 0, Vec::new());
    for (index, raw) in batch.changes.into_iter().enumerate() {
        let fallback_seq = batch.first_seq + index as u64;
        let seq = raw
            .get("seq")
            .and_then(Value::as_u64)
            .unwrap_or(fallback_seq);
        if seq <= applied {
            duplicates += 1;
            continue;
        }
        let change: Change = match serde_json::from_value(raw) {
            Ok(change) => change,
            Err(e) => {
                rejected.push(Rejected {
                    seq,
                    reason: format!("cannot parse the change: {e}"),
                });
                continue;
            }
        };
        let mark = tx.mark();
        tx.conn().execute_batch("SAVEPOINT sync_change")?;
        match apply_change(tx, &ctx, change.body) {
            Ok(outcome) => {
                tx.conn().execute_batch("RELEASE sync_change")?;
                match outcome {
                    Applied::New => done += 1,
                    Applied::Duplicate => duplicates += 1,
                }
            }
            Err(refusal) => {
                tx.conn()
                    .execute_batch("ROLLBACK TO sync_change; RELEASE sync_change")?;
                tx.undo_to(mark);
                match refusal {
                    Refusal::Reject(reason) => rejected.push(Rejected { seq, reason }),
                    Refusal::Fail(e) => return Err(e),
                }
            }
        }
    }
    if let Some(problem) = ctx.clock_ahead.take() {
        tracing::warn!(%router, %problem,
            "the agent's clock runs ahead of central's; its stamps are kept, central's clock is not moved");
    }
    tx.conn()
        .prepare_cached("UPDATE sync_routers SET up_applied = ?2 WHERE router_id = ?1")?
        .execute(params![
            router.to_string(),
            batch.last_seq.min(i64::MAX as u64) as i64
        ])?;
    Ok(UpOutcome::Applied {
        acked_through: batch.last_seq,
        applied: done,
        duplicates,
        rejected,
    })
}

fn apply_change(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    body: ChangeBody,
) -> std::result::Result<Applied, Refusal> {
    match body {
        ChangeBody::Customer(record) => apply_customer(tx, ctx, *record),
        ChangeBody::Ledger(entry) => entries::apply_ledger(tx, ctx, entry),
        ChangeBody::Session(session) => entries::apply_session(tx, ctx, session),
        ChangeBody::Audit(event) => entries::apply_audit(tx, ctx, event),
        ChangeBody::Package(_) => {
            reject("packages are owned by central; a site cannot change them")
        }
        ChangeBody::Noop => Ok(Applied::Duplicate),
    }
}

/// The customer's router, for a customer of the tenant (deleted ones included).
pub(super) fn customer_router(tx: &Tx<'_>, tenant: Uuid, id: Uuid) -> Result<Option<Option<Uuid>>> {
    let router: Option<Option<String>> = tx
        .conn()
        .prepare_cached("SELECT router_id FROM customers WHERE tenant_id = ?1 AND id = ?2")?
        .query_row(params![tenant.to_string(), id.to_string()], |r| r.get(0))
        .optional()?;
    router
        .map(|r| r.map(|r| parse_uuid(&r)).transpose())
        .transpose()
}

fn apply_customer(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    incoming: CustomerRecord,
) -> std::result::Result<Applied, Refusal> {
    if incoming.tenant_id != ctx.tenant {
        return reject("customer of another tenant");
    }
    if incoming
        .router_id
        .as_ref()
        .is_some_and(|r| r.value != Some(ctx.router))
    {
        return reject("a site cannot move a customer to another router");
    }
    if let Some(stamp) = incoming.max_stamp()
        && let Err(e) = tx.observe(stamp)
    {
        // The agent's clock runs ahead. Its write is kept (rejecting it would leave the two
        // sides apart for good: the agent keeps its newer stamp), but central's clock does not
        // jump; central's next edit of the field is stamped after it and wins everywhere.
        ctx.clock_ahead.set(Some(e.to_string()));
    }
    match CustomerRow::load(tx.conn(), ctx.tenant, incoming.id, true) {
        Ok(row) => merge_customer(tx, ctx, row, incoming),
        Err(StorageError::NotFound) => adopt_customer(tx, ctx, incoming),
        Err(e) => Err(e.into()),
    }
}

fn package_exists(tx: &Tx<'_>, tenant: Uuid, package: Uuid) -> Result<bool> {
    Ok(tx
        .conn()
        .prepare_cached(
            "SELECT 1 FROM packages WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
        )?
        .exists(params![tenant.to_string(), package.to_string()])?)
}

fn username_taken(tx: &Tx<'_>, row: &CustomerRow) -> Result<bool> {
    Ok(tx
        .conn()
        .prepare_cached(
            "SELECT 1 FROM customers WHERE tenant_id = ?1 AND username = ?2 AND id != ?3",
        )?
        .exists(params![
            row.tenant_id.to_string(),
            row.username,
            row.id.to_string()
        ])?)
}

/// Checks a row a site changed: values, a free username, a live package.
fn check_site_row(
    tx: &Tx<'_>,
    old: Option<&CustomerRow>,
    new: &CustomerRow,
) -> std::result::Result<(), Refusal> {
    check_row(new).or_else(reject)?;
    if old.is_none_or(|o| o.username != new.username) && username_taken(tx, new)? {
        return reject("username: a customer with this username already exists in this tenant");
    }
    if let Some(package) = new.package_id
        && old.is_none_or(|o| o.package_id != new.package_id)
        && !package_exists(tx, new.tenant_id, package)?
    {
        return reject("packageId: no such package");
    }
    Ok(())
}

fn encrypt(ctx: &Ctx, row: &CustomerRow, secret: &SyncedSecret) -> Result<Vec<u8>> {
    Ok(ctx.cipher.encrypt(
        &CustomerRow::aad(row.tenant_id, row.id),
        &easyisp_protocol::Secret::new(secret.expose().to_string()),
    )?)
}

fn merge_customer(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    row: CustomerRow,
    incoming: CustomerRecord,
) -> std::result::Result<Applied, Refusal> {
    if row.router_id != Some(ctx.router) {
        return reject("customer of another router");
    }
    if row.anonymized_at.is_some() {
        return reject("the customer was anonymised");
    }
    let stamps = row.stamps.clone().into_parsed()?;
    // The stored password is decrypted only when the site sent one to compare with.
    let password = match (&incoming.password, &row.password_enc) {
        (Some(_), Some(sealed)) => Some(SyncedSecret(
            ctx.cipher
                .decrypt(&CustomerRow::aad(row.tenant_id, row.id), sealed)?,
        )),
        _ => None,
    };
    let local = record_of_row(&row, &stamps, password);
    let mut merged = local.clone();
    let conflicts = merged.merge(&incoming);
    let lost = lost_writes(&conflicts, &incoming, &merged);
    let changed = changes(Some(&local), &incoming, &merged);
    let mut new = row.clone();
    let mut new_stamps = stamps.clone();
    write_into_row(&merged, &mut new, &mut new_stamps);
    if let Some(secret) = &merged.password
        && local.password.as_ref().map(|p| p.stamp) != Some(secret.stamp)
    {
        new.password_enc = Some(encrypt(ctx, &new, &secret.value)?);
        new_stamps.set("password", secret.stamp);
    }
    if new_stamps != stamps {
        check_site_row(tx, Some(&row), &new)?;
        new.stamps = LazyStamps::Parsed(new_stamps);
        new.save(tx.conn())?;
        counts::apply(
            tx.conn(),
            ctx.tenant,
            counts::key_of(&row),
            counts::key_of(&new),
        )?;
    }
    record_events(tx, ctx, new.id, "update", changed, lost);
    customers::queue_sync(tx, Some(&row), &new);
    Ok(Applied::New)
}

fn adopt_customer(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    mut incoming: CustomerRecord,
) -> std::result::Result<Applied, Refusal> {
    if incoming.username.is_none() || incoming.name.is_none() || incoming.connection_type.is_none()
    {
        return reject("unknown customer: a new customer needs username, name and connectionType");
    }
    // `max_stamp` is Some: the record carries at least a username.
    let stamp = incoming.max_stamp().unwrap_or_default();
    if incoming.router_id.is_none() {
        incoming.router_id = Some(easyisp_protocol::merge::Lww::new(Some(ctx.router), stamp));
    }
    if incoming.created_at.is_none() {
        incoming.created_at = Some(easyisp_protocol::merge::Lww::new(tx.now(), stamp));
    }
    let mut row = blank_row(&incoming, tx.now());
    let mut stamps = crate::storage::stamps::Stamps::default();
    write_into_row(&incoming, &mut row, &mut stamps);
    if let Some(secret) = &incoming.password {
        row.password_enc = Some(encrypt(ctx, &row, &secret.value)?);
        stamps.set("password", secret.stamp);
    }
    check_site_row(tx, None, &row)?;
    row.stamps = LazyStamps::Parsed(stamps);
    row.insert(tx)?;
    counts::apply(tx.conn(), ctx.tenant, None, counts::key_of(&row))?;
    let changed = changes(None, &incoming, &incoming);
    record_events(tx, ctx, row.id, "create", changed, Vec::new());
    customers::queue_sync(tx, None, &row);
    Ok(Applied::New)
}

/// The customer's audit: what the site changed, and the site's writes that lost.
fn record_events(
    tx: &mut Tx<'_>,
    ctx: &Ctx,
    customer: Uuid,
    action: &str,
    changed: Vec<FieldChange>,
    lost: Vec<FieldChange>,
) {
    let at = tx.now();
    if !changed.is_empty() {
        tx.audit(audit::event(
            ctx.tenant, "customer", customer, at, &ctx.actor, action, changed,
        ));
    }
    if !lost.is_empty() {
        tx.audit(audit::event(
            ctx.tenant,
            "customer",
            customer,
            at,
            &ctx.actor,
            "sync-conflict",
            lost,
        ));
    }
}
