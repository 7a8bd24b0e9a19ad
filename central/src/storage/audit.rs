//! The audit log: append-only events (who, what, old → new per field), written only through
//! `Tx::flush` so every change commits with its event, and read per entity.

use super::{Result, Storage, StorageError, actor_json, from_ms, ms, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::{AuditEvent, FieldChange};
use easyisp_protocol::ledger::Actor;
use rusqlite::{Connection, params};
use serde::Serialize;
use uuid::Uuid;

/// Builds an event for `Tx::audit`.
pub fn event(
    tenant_id: Uuid,
    entity: &str,
    entity_id: Uuid,
    at: DateTime<Utc>,
    actor: &Actor,
    action: &str,
    changes: Vec<FieldChange>,
) -> AuditEvent {
    AuditEvent {
        id: super::new_id(),
        tenant_id,
        entity: entity.to_string(),
        entity_id,
        at,
        actor: actor.clone(),
        action: action.to_string(),
        changes,
    }
}

pub(super) fn insert(conn: &Connection, event: &AuditEvent) -> Result<()> {
    let changes = serde_json::to_string(&event.changes).map_err(StorageError::corrupt)?;
    insert_row(
        conn,
        &PreparedEvent {
            id: event.id,
            tenant_id: event.tenant_id,
            entity: &event.entity,
            entity_id: event.entity_id,
            at: event.at,
            actor: actor_json(&event.actor),
            action: &event.action,
            changes,
        },
    )
}

/// An event with its actor and changes already in their stored JSON form: bulk imports build
/// these off the writer thread and hand them to `Tx::audit_prepared`.
#[derive(Debug, Clone)]
pub struct PreparedEvent<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub entity: &'a str,
    pub entity_id: Uuid,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: &'a str,
    pub changes: String,
}

pub(super) fn insert_row(conn: &Connection, event: &PreparedEvent<'_>) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (id, tenant_id, entity, entity_id, at, actor, action, changes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        event.id.to_string(),
        event.tenant_id.to_string(),
        event.entity,
        event.entity_id.to_string(),
        ms(event.at),
        event.actor,
        event.action,
        event.changes,
    ])?;
    Ok(())
}

/// Replaces every recorded value of an entity's audit trail (anonymisation): the trail keeps
/// who did what and when, but no longer the personal data.
pub(super) fn redact_entity(conn: &Connection, tenant: Uuid, entity_id: Uuid) -> Result<()> {
    let mut select = conn
        .prepare_cached("SELECT id, changes FROM audit WHERE tenant_id = ?1 AND entity_id = ?2")?;
    let rows: Vec<(String, String)> = select
        .query_map(params![tenant.to_string(), entity_id.to_string()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut update = conn.prepare_cached("UPDATE audit SET changes = ?2 WHERE id = ?1")?;
    for (id, changes) in rows {
        let mut changes: Vec<FieldChange> =
            serde_json::from_str(&changes).map_err(StorageError::corrupt)?;
        for change in &mut changes {
            let redacted = serde_json::Value::String("redacted".into());
            if !change.old.is_null() {
                change.old = redacted.clone();
            }
            if !change.new.is_null() {
                change.new = redacted;
            }
        }
        update.execute(params![
            id,
            serde_json::to_string(&changes).map_err(StorageError::corrupt)?
        ])?;
    }
    Ok(())
}

#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
pub struct AuditPage {
    pub events: Vec<AuditEvent>,
    pub total: u64,
}

fn read_event(row: &rusqlite::Row<'_>) -> Result<AuditEvent> {
    let text = |i: usize| -> Result<String> { Ok(row.get::<_, String>(i)?) };
    Ok(AuditEvent {
        id: parse_uuid(&text(0)?)?,
        tenant_id: parse_uuid(&text(1)?)?,
        entity: text(2)?,
        entity_id: parse_uuid(&text(3)?)?,
        at: from_ms(row.get(4)?)?,
        actor: serde_json::from_str(&text(5)?).map_err(StorageError::corrupt)?,
        action: text(6)?,
        changes: serde_json::from_str(&text(7)?).map_err(StorageError::corrupt)?,
    })
}

impl Storage {
    /// A customer's audit trail, newest first. Works for deleted customers too (that is what
    /// an audit is for); another tenant's customer is `NotFound`.
    pub async fn customer_audit(
        &self,
        tenant: Uuid,
        customer: Uuid,
        page: u32,
        page_size: u32,
    ) -> Result<AuditPage> {
        self.read(move |conn| {
            let exists = conn
                .prepare_cached("SELECT 1 FROM customers WHERE tenant_id = ?1 AND id = ?2")?
                .exists(params![tenant.to_string(), customer.to_string()])?;
            if !exists {
                return Err(StorageError::NotFound);
            }
            let total: i64 = conn
                .prepare_cached("SELECT COUNT(*) FROM audit WHERE tenant_id = ?1 AND entity_id = ?2")?
                .query_row(params![tenant.to_string(), customer.to_string()], |r| r.get(0))?;
            let offset = i64::from(page.saturating_sub(1)) * i64::from(page_size);
            let mut stmt = conn.prepare_cached(
                "SELECT id, tenant_id, entity, entity_id, at, actor, action, changes FROM audit
                 WHERE tenant_id = ?1 AND entity_id = ?2 ORDER BY at DESC, id DESC LIMIT ?3 OFFSET ?4",
            )?;
            let mut rows = stmt.query(params![tenant.to_string(), customer.to_string(), page_size, offset])?;
            let mut events = Vec::new();
            while let Some(row) = rows.next()? {
                events.push(read_event(row)?);
            }
            Ok(AuditPage { events, total: total.max(0) as u64 })
        })
        .await
    }
}
