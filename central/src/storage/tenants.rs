//! Tenants (one ISP each) and the creation of a tenant with its first admin.

use super::{Result, Storage, StorageError, audit, ms, new_id, parse_uuid, system_actor};
use easyisp_protocol::audit::FieldChange;
use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

impl Storage {
    /// Creates a tenant and its first admin operator in one transaction.
    pub async fn create_tenant(
        &self,
        name: String,
        calling_code: Option<String>,
        admin_username: String,
        admin_password_hash: String,
    ) -> Result<Uuid> {
        self.write(move |tx| {
            let tenant = new_id();
            let operator = new_id();
            let now = ms(tx.now());
            let taken = tx
                .conn()
                .prepare_cached("SELECT 1 FROM tenants WHERE name = ?1 COLLATE NOCASE")?
                .exists([&name])?;
            if taken {
                return Err(StorageError::Conflict {
                    field: Some("name"),
                    message: format!("a tenant named {name:?} already exists"),
                });
            }
            tx.conn().execute(
                "INSERT INTO tenants (id, name, calling_code, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![tenant.to_string(), name, calling_code, now],
            )?;
            tx.conn().execute(
                "INSERT INTO operators (id, tenant_id, username, password_hash, role, created_at)
                 VALUES (?1, ?2, ?3, ?4, 'admin', ?5)",
                params![
                    operator.to_string(),
                    tenant.to_string(),
                    admin_username,
                    admin_password_hash,
                    now
                ],
            )?;
            let actor = system_actor("tenant add");
            let at = tx.now();
            let change = |field: &str, new: Value| FieldChange {
                field: field.into(),
                old: Value::Null,
                new,
            };
            tx.audit(audit::event(
                tenant,
                "tenant",
                tenant,
                at,
                &actor,
                "create",
                vec![change("name", Value::String(name))],
            ));
            tx.audit(audit::event(
                tenant,
                "operator",
                operator,
                at,
                &actor,
                "create",
                vec![
                    change("username", Value::String(admin_username)),
                    change("role", Value::String("admin".into())),
                    change("password", easyisp_protocol::audit::secret_change()),
                ],
            ));
            Ok(tenant)
        })
        .await
    }

    /// Resolves what a client calls its tenant: the tenant id, or its (unique) name.
    pub async fn find_tenant(&self, reference: String) -> Result<Option<Uuid>> {
        self.read(move |conn| {
            let found: Option<String> = conn
                .prepare_cached(
                    "SELECT id FROM tenants WHERE id = ?1 OR name = ?1 COLLATE NOCASE LIMIT 1",
                )?
                .query_row([reference.trim().to_ascii_lowercase()], |r| r.get(0))
                .optional()?;
            found.map(|id| parse_uuid(&id)).transpose()
        })
        .await
    }

    /// The tenant's default country calling code for phone numbers written without one.
    pub async fn tenant_calling_code(&self, tenant: Uuid) -> Result<Option<String>> {
        self.read(move |conn| {
            conn.prepare_cached("SELECT calling_code FROM tenants WHERE id = ?1")?
                .query_row([tenant.to_string()], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .ok_or(StorageError::NotFound)
        })
        .await
    }
}
