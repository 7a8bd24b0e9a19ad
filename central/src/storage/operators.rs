//! Operators (the ISP's staff accounts), their roles, and login tokens (stored as SHA-256
//! hashes, with expiry and revocation).

use super::{Result, Storage, StorageError, audit, from_ms, ms, new_id, parse_uuid};
use crate::permissions::Role;
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::{FieldChange, secret_change};
use easyisp_protocol::ledger::Actor;
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

/// An operator as the API shows it (never with a password or hash).
#[derive(schemars::JsonSchema, Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorView {
    pub id: Uuid,
    pub username: String,
    pub role: Role,
    pub permissions: Vec<&'static str>,
    pub created_at: DateTime<Utc>,
}

/// The operator behind a valid token.
#[derive(Debug, Clone)]
pub struct AuthedOperator {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub username: String,
    pub role: Role,
    /// When the presented token expires.
    pub token_expires_at: DateTime<Utc>,
}

fn role(text: &str) -> Result<Role> {
    text.parse()
        .map_err(|_| StorageError::corrupt(format!("role {text:?}")))
}

fn view(row: &rusqlite::Row<'_>) -> Result<OperatorView> {
    let role = role(&row.get::<_, String>(2)?)?;
    Ok(OperatorView {
        id: parse_uuid(&row.get::<_, String>(0)?)?,
        username: row.get(1)?,
        role,
        permissions: role.permissions(),
        created_at: from_ms(row.get(3)?)?,
    })
}

fn load(conn: &Connection, tenant: Uuid, id: Uuid) -> Result<OperatorView> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, username, role, created_at FROM operators
         WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
    )?;
    let mut rows = stmt.query(params![tenant.to_string(), id.to_string()])?;
    match rows.next()? {
        Some(row) => view(row),
        None => Err(StorageError::NotFound),
    }
}

fn admins(conn: &Connection, tenant: Uuid) -> Result<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM operators WHERE tenant_id = ?1 AND role = 'admin' AND deleted_at IS NULL",
        )?
        .query_row([tenant.to_string()], |r| r.get(0))?)
}

fn revoke_all(conn: &Connection, tenant: Uuid, operator: Uuid, now: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE auth_tokens SET revoked_at = ?3
         WHERE tenant_id = ?1 AND operator_id = ?2 AND revoked_at IS NULL",
    )?
    .execute(params![tenant.to_string(), operator.to_string(), now])?;
    Ok(())
}

impl Storage {
    /// The id and password hash of a live operator, for login.
    pub async fn operator_credentials(
        &self,
        tenant: Uuid,
        username: String,
    ) -> Result<Option<(Uuid, String)>> {
        self.read(move |conn| {
            let row: Option<(String, String)> = conn
                .prepare_cached(
                    "SELECT id, password_hash FROM operators
                     WHERE tenant_id = ?1 AND username = ?2 COLLATE NOCASE AND deleted_at IS NULL",
                )?
                .query_row(params![tenant.to_string(), username], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            row.map(|(id, hash)| Ok((parse_uuid(&id)?, hash)))
                .transpose()
        })
        .await
    }

    /// Stores a new login token's hash.
    pub async fn create_token(
        &self,
        tenant: Uuid,
        operator: Uuid,
        token_hash: Vec<u8>,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        self.write(move |tx| {
            tx.conn()
                .prepare_cached(
                    "INSERT INTO auth_tokens (token_hash, tenant_id, operator_id, created_at, expires_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?
                .execute(params![token_hash, tenant.to_string(), operator.to_string(), ms(tx.now()), ms(expires_at)])?;
            Ok(())
        })
        .await
    }

    /// The operator a presented token belongs to, if it is known, unexpired and unrevoked.
    pub async fn authenticate(
        &self,
        token_hash: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Result<Option<AuthedOperator>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT o.id, o.tenant_id, o.username, o.role, t.expires_at FROM auth_tokens t
                 JOIN operators o ON o.id = t.operator_id AND o.tenant_id = t.tenant_id
                 WHERE t.token_hash = ?1 AND t.revoked_at IS NULL AND t.expires_at > ?2
                   AND o.deleted_at IS NULL",
            )?;
            let mut rows = stmt.query(params![token_hash, ms(now)])?;
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            Ok(Some(AuthedOperator {
                id: parse_uuid(&row.get::<_, String>(0)?)?,
                tenant_id: parse_uuid(&row.get::<_, String>(1)?)?,
                username: row.get(2)?,
                role: role(&row.get::<_, String>(3)?)?,
                token_expires_at: from_ms(row.get(4)?)?,
            }))
        })
        .await
    }

    pub async fn revoke_token(&self, tenant: Uuid, token_hash: Vec<u8>) -> Result<()> {
        self.write(move |tx| {
            tx.conn()
                .prepare_cached(
                    "UPDATE auth_tokens SET revoked_at = ?3 WHERE token_hash = ?1 AND tenant_id = ?2",
                )?
                .execute(params![token_hash, tenant.to_string(), ms(tx.now())])?;
            Ok(())
        })
        .await
    }

    pub async fn create_operator(
        &self,
        tenant: Uuid,
        actor: Actor,
        username: String,
        password_hash: String,
        role: Role,
    ) -> Result<OperatorView> {
        self.write(move |tx| {
            let id = new_id();
            let taken = tx
                .conn()
                .prepare_cached(
                    "SELECT 1 FROM operators WHERE tenant_id = ?1 AND username = ?2 COLLATE NOCASE
                     AND deleted_at IS NULL",
                )?
                .exists(params![tenant.to_string(), username])?;
            if taken {
                return Err(StorageError::Conflict {
                    field: Some("username"),
                    message: "an operator with this username already exists".into(),
                });
            }
            tx.conn()
                .prepare_cached(
                    "INSERT INTO operators (id, tenant_id, username, password_hash, role, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![id.to_string(), tenant.to_string(), username, password_hash, role.as_str(), ms(tx.now())])?;
            let change = |field: &str, new: Value| FieldChange { field: field.into(), old: Value::Null, new };
            let changes = vec![
                change("username", Value::String(username)),
                change("role", Value::String(role.as_str().into())),
                change("password", secret_change()),
            ];
            let at = tx.now();
            tx.audit(audit::event(tenant, "operator", id, at, &actor, "create", changes));
            load(tx.conn(), tenant, id)
        })
        .await
    }

    pub async fn list_operators(&self, tenant: Uuid) -> Result<Vec<OperatorView>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, username, role, created_at FROM operators
                 WHERE tenant_id = ?1 AND deleted_at IS NULL ORDER BY created_at, id LIMIT 10000",
            )?;
            let mut rows = stmt.query([tenant.to_string()])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(view(row)?);
            }
            Ok(out)
        })
        .await
    }

    pub async fn get_operator(&self, tenant: Uuid, id: Uuid) -> Result<OperatorView> {
        self.read(move |conn| load(conn, tenant, id)).await
    }

    /// Changes role and/or password. A new password revokes the operator's tokens. The last
    /// admin of a tenant cannot be demoted.
    pub async fn update_operator(
        &self,
        tenant: Uuid,
        actor: Actor,
        id: Uuid,
        password_hash: Option<String>,
        new_role: Option<Role>,
    ) -> Result<OperatorView> {
        self.write(move |tx| {
            let before = load(tx.conn(), tenant, id)?;
            let mut changes = Vec::new();
            let now = ms(tx.now());
            if let Some(new_role) = new_role.filter(|r| *r != before.role) {
                if before.role == Role::Admin && admins(tx.conn(), tenant)? <= 1 {
                    return Err(StorageError::Conflict {
                        field: Some("role"),
                        message: "the last admin of a tenant cannot be demoted".into(),
                    });
                }
                tx.conn()
                    .prepare_cached(
                        "UPDATE operators SET role = ?3 WHERE tenant_id = ?1 AND id = ?2",
                    )?
                    .execute(params![
                        tenant.to_string(),
                        id.to_string(),
                        new_role.as_str()
                    ])?;
                changes.push(FieldChange {
                    field: "role".into(),
                    old: Value::String(before.role.as_str().into()),
                    new: Value::String(new_role.as_str().into()),
                });
            }
            if let Some(hash) = password_hash {
                tx.conn()
                    .prepare_cached(
                        "UPDATE operators SET password_hash = ?3 WHERE tenant_id = ?1 AND id = ?2",
                    )?
                    .execute(params![tenant.to_string(), id.to_string(), hash])?;
                revoke_all(tx.conn(), tenant, id, now)?;
                changes.push(FieldChange {
                    field: "password".into(),
                    old: secret_change(),
                    new: secret_change(),
                });
            }
            if !changes.is_empty() {
                let at = tx.now();
                tx.audit(audit::event(
                    tenant, "operator", id, at, &actor, "update", changes,
                ));
            }
            load(tx.conn(), tenant, id)
        })
        .await
    }

    /// Removes an operator (kept for the audit trail) and revokes its tokens.
    pub async fn delete_operator(&self, tenant: Uuid, actor: Actor, id: Uuid) -> Result<()> {
        self.write(move |tx| {
            let before = load(tx.conn(), tenant, id)?;
            if before.role == Role::Admin && admins(tx.conn(), tenant)? <= 1 {
                return Err(StorageError::Conflict {
                    field: None,
                    message: "the last admin of a tenant cannot be deleted".into(),
                });
            }
            let now = ms(tx.now());
            tx.conn()
                .prepare_cached(
                    "UPDATE operators SET deleted_at = ?3 WHERE tenant_id = ?1 AND id = ?2",
                )?
                .execute(params![tenant.to_string(), id.to_string(), now])?;
            revoke_all(tx.conn(), tenant, id, now)?;
            let at = tx.now();
            tx.audit(audit::event(
                tenant,
                "operator",
                id,
                at,
                &actor,
                "delete",
                Vec::new(),
            ));
            Ok(())
        })
        .await
    }
}
