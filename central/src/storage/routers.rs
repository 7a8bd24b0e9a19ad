//! Routers (one MikroTik per agent): CRUD with audit, and one-time enrollment tokens stored
//! as hashes for the agent's `enroll` (the redeem endpoint belongs to the agent issue).

use super::{Result, Storage, StorageError, audit, from_ms, ms, new_id, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::FieldChange;
use easyisp_protocol::ledger::Actor;
use easyisp_protocol::router::{RouterStatus, RouterView};
use rusqlite::{Connection, params};
use serde_json::Value;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct RouterInput {
    pub name: String,
    pub ip_address: String,
    pub location: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RouterPatch {
    pub name: Option<String>,
    pub ip_address: Option<String>,
    pub location: Option<Option<String>>,
}

/// A stored enrollment token: the hash is what `redeem` will look up.
#[derive(Debug, Clone)]
pub struct EnrollToken {
    pub token_hash: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
struct RouterRow {
    id: Uuid,
    name: String,
    ip_address: String,
    location: Option<String>,
    online: bool,
    last_seen: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
}

impl RouterRow {
    fn read(row: &rusqlite::Row<'_>) -> Result<RouterRow> {
        Ok(RouterRow {
            id: parse_uuid(&row.get::<_, String>(0)?)?,
            name: row.get(1)?,
            ip_address: row.get(2)?,
            location: row.get(3)?,
            online: row.get(4)?,
            last_seen: row.get::<_, Option<i64>>(5)?.map(from_ms).transpose()?,
            created_at: from_ms(row.get(6)?)?,
        })
    }

    fn load(conn: &Connection, tenant: Uuid, id: Uuid) -> Result<RouterRow> {
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, ip_address, location, online, last_seen, created_at FROM routers
             WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
        )?;
        let mut rows = stmt.query(params![tenant.to_string(), id.to_string()])?;
        match rows.next()? {
            Some(row) => RouterRow::read(row),
            None => Err(StorageError::NotFound),
        }
    }

    fn view(&self) -> RouterView {
        let status = match (self.last_seen, self.online) {
            (None, _) => RouterStatus::Pending,
            (Some(_), true) => RouterStatus::Online,
            (Some(_), false) => RouterStatus::Offline,
        };
        RouterView {
            id: self.id,
            name: self.name.clone(),
            ip_address: self.ip_address.clone(),
            location: self.location.clone(),
            status,
            last_seen: self.last_seen,
            created_at: self.created_at,
        }
    }
}

fn text(value: &Option<String>) -> Value {
    value.clone().map_or(Value::Null, Value::String)
}

impl Storage {
    pub async fn create_router(
        &self,
        tenant: Uuid,
        actor: Actor,
        input: RouterInput,
    ) -> Result<RouterView> {
        self.write(move |tx| {
            let id = new_id();
            tx.conn()
                .prepare_cached(
                    "INSERT INTO routers (id, tenant_id, name, ip_address, location, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    id.to_string(),
                    tenant.to_string(),
                    input.name,
                    input.ip_address,
                    input.location,
                    ms(tx.now())
                ])?;
            let change = |field: &str, new: Value| FieldChange {
                field: field.into(),
                old: Value::Null,
                new,
            };
            let changes = vec![
                change("name", Value::String(input.name)),
                change("ipAddress", Value::String(input.ip_address)),
                change("location", text(&input.location)),
            ];
            let at = tx.now();
            tx.audit(audit::event(
                tenant, "router", id, at, &actor, "create", changes,
            ));
            Ok(RouterRow::load(tx.conn(), tenant, id)?.view())
        })
        .await
    }

    pub async fn list_routers(&self, tenant: Uuid) -> Result<Vec<RouterView>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, ip_address, location, online, last_seen, created_at FROM routers
                 WHERE tenant_id = ?1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT 10000",
            )?;
            let mut rows = stmt.query([tenant.to_string()])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(RouterRow::read(row)?.view());
            }
            Ok(out)
        })
        .await
    }

    pub async fn get_router(&self, tenant: Uuid, id: Uuid) -> Result<RouterView> {
        self.read(move |conn| Ok(RouterRow::load(conn, tenant, id)?.view()))
            .await
    }

    pub async fn update_router(
        &self,
        tenant: Uuid,
        actor: Actor,
        id: Uuid,
        patch: RouterPatch,
    ) -> Result<RouterView> {
        self.write(move |tx| {
            let old = RouterRow::load(tx.conn(), tenant, id)?;
            let mut new = old.clone();
            let mut changes = Vec::new();
            if let Some(v) = patch.name.filter(|v| *v != old.name) {
                changes.push(FieldChange { field: "name".into(), old: Value::String(old.name.clone()), new: Value::String(v.clone()) });
                new.name = v;
            }
            if let Some(v) = patch.ip_address.filter(|v| *v != old.ip_address) {
                changes.push(FieldChange {
                    field: "ipAddress".into(),
                    old: Value::String(old.ip_address.clone()),
                    new: Value::String(v.clone()),
                });
                new.ip_address = v;
            }
            if let Some(v) = patch.location.filter(|v| *v != old.location) {
                changes.push(FieldChange { field: "location".into(), old: text(&old.location), new: text(&v) });
                new.location = v;
            }
            if !changes.is_empty() {
                tx.conn()
                    .prepare_cached(
                        "UPDATE routers SET name = ?3, ip_address = ?4, location = ?5 WHERE tenant_id = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant.to_string(), id.to_string(), new.name, new.ip_address, new.location])?;
                let at = tx.now();
                tx.audit(audit::event(tenant, "router", id, at, &actor, "update", changes));
            }
            Ok(new.view())
        })
        .await
    }

    /// Soft-deletes a router that serves no customer (409 otherwise).
    pub async fn delete_router(&self, tenant: Uuid, actor: Actor, id: Uuid) -> Result<()> {
        self.write(move |tx| {
            RouterRow::load(tx.conn(), tenant, id)?;
            let served: i64 = tx
                .conn()
                .prepare_cached(
                    "SELECT COUNT(*) FROM customers WHERE tenant_id = ?1 AND router_id = ?2 AND deleted_at IS NULL",
                )?
                .query_row(params![tenant.to_string(), id.to_string()], |r| r.get(0))?;
            if served > 0 {
                return Err(StorageError::Conflict {
                    field: None,
                    message: format!("{served} customers are still on this router; move them first"),
                });
            }
            let now = ms(tx.now());
            tx.conn()
                .prepare_cached("UPDATE routers SET deleted_at = ?3 WHERE tenant_id = ?1 AND id = ?2")?
                .execute(params![tenant.to_string(), id.to_string(), now])?;
            tx.conn()
                .prepare_cached("UPDATE enroll_tokens SET used_at = ?3 WHERE tenant_id = ?1 AND router_id = ?2 AND used_at IS NULL")?
                .execute(params![tenant.to_string(), id.to_string(), now])?;
            // Its agent is gone for good: drop its outbox and cursors.
            tx.conn()
                .prepare_cached("DELETE FROM sync_down WHERE router_id = ?1")?
                .execute([id.to_string()])?;
            tx.conn()
                .prepare_cached("DELETE FROM sync_routers WHERE router_id = ?1 AND tenant_id = ?2")?
                .execute(params![id.to_string(), tenant.to_string()])?;
            let at = tx.now();
            tx.audit(audit::event(tenant, "router", id, at, &actor, "delete", Vec::new()));
            Ok(())
        })
        .await
    }

    /// Stores a one-time enrollment token's hash; earlier unused tokens of the router stop
    /// working, so only the newest token can enroll.
    pub async fn create_enroll_token(
        &self,
        tenant: Uuid,
        actor: Actor,
        router: Uuid,
        token: EnrollToken,
    ) -> Result<()> {
        self.write(move |tx| {
            RouterRow::load(tx.conn(), tenant, router)?;
            let now = ms(tx.now());
            tx.conn()
                .prepare_cached("UPDATE enroll_tokens SET used_at = ?3 WHERE tenant_id = ?1 AND router_id = ?2 AND used_at IS NULL")?
                .execute(params![tenant.to_string(), router.to_string(), now])?;
            tx.conn()
                .prepare_cached(
                    "INSERT INTO enroll_tokens (token_hash, tenant_id, router_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![token.token_hash, tenant.to_string(), router.to_string(), now, ms(token.expires_at)])?;
            let at = tx.now();
            let changes = vec![FieldChange {
                field: "enrollToken".into(),
                old: Value::Null,
                new: easyisp_protocol::audit::secret_change(),
            }];
            tx.audit(audit::event(tenant, "router", router, at, &actor, "enroll_token", changes));
            Ok(())
        })
        .await
    }
}
