//! Accounts of the MQTT broker (table `broker_accounts`): central's own client, one per
//! enrolled router (username = router id) and read-only monitors. Only Mosquitto's `$7$` hash
//! is stored; the plain password is shown once. Redeeming an enrollment token (mark it used,
//! create or rotate the router's account, audit) is one transaction.
//!
//! The broker is shared by all tenants, so these accounts are the one table here whose
//! queries do not all name a tenant: a username is unique across the whole broker.

use super::{Result, Storage, StorageError, audit, from_ms, ms, parse_uuid};
use chrono::{DateTime, Utc};
use easyisp_protocol::audit::FieldChange;
use easyisp_protocol::ledger::{Actor, ActorKind};
use rusqlite::{OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

/// Who an account belongs to; the order is the order of the ACL file's user sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountKind {
    /// Central's own sync client: reads and writes every site.
    Central,
    /// A read-only monitoring client: every site's `status` and `telemetry`.
    Monitor,
    /// An enrolled agent; its username is its router id.
    Agent,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Central => "central",
            AccountKind::Monitor => "monitor",
            AccountKind::Agent => "agent",
        }
    }

    fn parse(text: &str) -> Result<AccountKind> {
        match text {
            "central" => Ok(AccountKind::Central),
            "monitor" => Ok(AccountKind::Monitor),
            "agent" => Ok(AccountKind::Agent),
            other => Err(StorageError::corrupt(format!(
                "broker account kind {other:?}"
            ))),
        }
    }
}

/// One account as the broker's password and ACL files need it.
#[derive(Clone, PartialEq)]
pub struct BrokerAccount {
    pub username: String,
    pub kind: AccountKind,
    pub tenant_id: Option<Uuid>,
    pub router_id: Option<Uuid>,
    /// Mosquitto's `$7$` PBKDF2-SHA512 hash.
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for BrokerAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAccount")
            .field("username", &self.username)
            .field("kind", &self.kind)
            .field("tenant_id", &self.tenant_id)
            .field("router_id", &self.router_id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The router behind a redeemed enrollment token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrolled {
    pub tenant_id: Uuid,
    pub router_id: Uuid,
    pub router_name: String,
}

fn read_account(row: &rusqlite::Row<'_>) -> Result<BrokerAccount> {
    let uuid = |text: Option<String>| text.as_deref().map(parse_uuid).transpose();
    Ok(BrokerAccount {
        username: row.get(0)?,
        kind: AccountKind::parse(&row.get::<_, String>(1)?)?,
        tenant_id: uuid(row.get(2)?)?,
        router_id: uuid(row.get(3)?)?,
        password_hash: row.get(4)?,
        created_at: from_ms(row.get(5)?)?,
    })
}

const UPSERT: &str = "INSERT INTO broker_accounts
        (username, kind, tenant_id, router_id, password_hash, created_at)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT(username) DO UPDATE SET kind = excluded.kind, tenant_id = excluded.tenant_id,
        router_id = excluded.router_id, password_hash = excluded.password_hash,
        created_at = excluded.created_at";

fn router_name(conn: &rusqlite::Connection, tenant: Uuid, router: Uuid) -> Result<Option<String>> {
    Ok(conn
        .prepare_cached(
            "SELECT name FROM routers WHERE tenant_id = ?1 AND id = ?2 AND deleted_at IS NULL",
        )?
        .query_row(params![tenant.to_string(), router.to_string()], |r| {
            r.get(0)
        })
        .optional()?)
}

impl Storage {
    /// Every account the broker should accept, by username. Accounts of deleted routers are
    /// left out even if a revocation did not get to remove them.
    pub async fn broker_accounts(&self) -> Result<Vec<BrokerAccount>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT a.username, a.kind, a.tenant_id, a.router_id, a.password_hash, a.created_at
                 FROM broker_accounts a LEFT JOIN routers r ON r.id = a.router_id
                 WHERE a.kind != 'agent' OR (r.id IS NOT NULL AND r.deleted_at IS NULL)
                 ORDER BY a.username",
            )?;
            let mut rows = stmt.query([])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                out.push(read_account(row)?);
            }
            Ok(out)
        })
        .await
    }

    /// Creates or replaces central's or a monitor's account.
    pub async fn put_broker_account(
        &self,
        username: String,
        kind: AccountKind,
        password_hash: String,
    ) -> Result<()> {
        if kind == AccountKind::Agent {
            return Err(StorageError::Invalid {
                field: "kind",
                message: "agent accounts are made by enrollment".into(),
            });
        }
        self.write(move |tx| {
            if kind == AccountKind::Central {
                // One central account at a time: a renamed one replaces the old.
                tx.conn()
                    .prepare_cached(
                        "DELETE FROM broker_accounts WHERE kind = 'central' AND username != ?1",
                    )?
                    .execute([&username])?;
            }
            let existing: Option<String> = tx
                .conn()
                .prepare_cached("SELECT kind FROM broker_accounts WHERE username = ?1")?
                .query_row([&username], |r| r.get(0))
                .optional()?;
            if existing.is_some_and(|k| k != kind.as_str()) {
                return Err(StorageError::Conflict {
                    field: Some("name"),
                    message: format!("the broker account {username:?} belongs to something else"),
                });
            }
            let now = ms(tx.now());
            tx.conn().prepare_cached(UPSERT)?.execute(params![
                username,
                kind.as_str(),
                None::<String>,
                None::<String>,
                password_hash,
                now
            ])?;
            Ok(())
        })
        .await
    }

    /// Deletes a central or monitor account; `false` when there was none of that kind.
    pub async fn delete_broker_account(&self, username: String, kind: AccountKind) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .conn()
                .prepare_cached("DELETE FROM broker_accounts WHERE username = ?1 AND kind = ?2")?
                .execute(params![username, kind.as_str()])?;
            Ok(n > 0)
        })
        .await
    }

    /// Creates or rotates a router's agent account (NotFound for an unknown or deleted
    /// router), with an audit event.
    pub async fn set_agent_account(
        &self,
        tenant: Uuid,
        router: Uuid,
        actor: Actor,
        password_hash: String,
    ) -> Result<()> {
        self.write(move |tx| {
            router_name(tx.conn(), tenant, router)?.ok_or(StorageError::NotFound)?;
            let now = tx.now();
            tx.conn().prepare_cached(UPSERT)?.execute(params![
                router.to_string(),
                AccountKind::Agent.as_str(),
                tenant.to_string(),
                router.to_string(),
                password_hash,
                ms(now)
            ])?;
            tx.audit(audit::event(
                tenant,
                "router",
                router,
                now,
                &actor,
                "broker_account",
                vec![password_changed()],
            ));
            Ok(())
        })
        .await
    }

    /// Removes a router's agent account, whatever its tenant; `false` when it had none.
    pub async fn remove_agent_account(&self, router: Uuid) -> Result<bool> {
        self.write(move |tx| {
            let n = tx
                .conn()
                .prepare_cached(
                    "DELETE FROM broker_accounts WHERE kind = 'agent' AND router_id = ?1",
                )?
                .execute([router.to_string()])?;
            Ok(n > 0)
        })
        .await
    }

    /// An operator revokes a router's agent: its account goes, with an audit event.
    /// NotFound when the router is not one of the tenant's; `false` when it had no account.
    pub async fn revoke_agent_account(
        &self,
        tenant: Uuid,
        actor: Actor,
        router: Uuid,
    ) -> Result<bool> {
        self.write(move |tx| {
            router_name(tx.conn(), tenant, router)?.ok_or(StorageError::NotFound)?;
            let n = tx
                .conn()
                .prepare_cached(
                    "DELETE FROM broker_accounts
                     WHERE kind = 'agent' AND tenant_id = ?1 AND router_id = ?2",
                )?
                .execute(params![tenant.to_string(), router.to_string()])?;
            let at = tx.now();
            tx.audit(audit::event(
                tenant,
                "router",
                router,
                at,
                &actor,
                "revoke",
                Vec::new(),
            ));
            Ok(n > 0)
        })
        .await
    }

    /// Redeems a one-time enrollment token: when it is known, unused and unexpired and its
    /// router exists, marks it used, creates or rotates the router's agent account with
    /// `password_hash` and records an "enrolled" event, all in one transaction. `None` for
    /// any token that cannot be redeemed (the caller answers all of them alike).
    pub async fn redeem_enroll_token(
        &self,
        token_hash: Vec<u8>,
        password_hash: String,
    ) -> Result<Option<Enrolled>> {
        self.write(move |tx| {
            let now = tx.now();
            let token: Option<(String, String, i64, Option<i64>)> = tx
                .conn()
                .prepare_cached(
                    "SELECT tenant_id, router_id, expires_at, used_at FROM enroll_tokens
                     WHERE token_hash = ?1",
                )?
                .query_row([&token_hash], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((tenant, router, expires_at, None)) = token else {
                return Ok(None);
            };
            if expires_at <= ms(now) {
                return Ok(None);
            }
            let (tenant, router) = (parse_uuid(&tenant)?, parse_uuid(&router)?);
            let Some(name) = router_name(tx.conn(), tenant, router)? else {
                return Ok(None);
            };
            tx.conn()
                .prepare_cached("UPDATE enroll_tokens SET used_at = ?2 WHERE token_hash = ?1")?
                .execute(params![token_hash, ms(now)])?;
            tx.conn().prepare_cached(UPSERT)?.execute(params![
                router.to_string(),
                AccountKind::Agent.as_str(),
                tenant.to_string(),
                router.to_string(),
                password_hash,
                ms(now)
            ])?;
            let actor = Actor {
                kind: ActorKind::Agent,
                id: Some(router),
                name: name.clone(),
            };
            tx.audit(audit::event(
                tenant,
                "router",
                router,
                now,
                &actor,
                "enrolled",
                vec![password_changed()],
            ));
            Ok(Some(Enrolled {
                tenant_id: tenant,
                router_id: router,
                router_name: name,
            }))
        })
        .await
    }
}

fn password_changed() -> FieldChange {
    FieldChange {
        field: "mqttPassword".into(),
        old: Value::Null,
        new: easyisp_protocol::audit::secret_change(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{EnrollToken, RouterInput, StorageOptions, system_actor};

    async fn storage_with_router() -> (tempfile::TempDir, Storage, Uuid, Uuid) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), StorageOptions::default()).unwrap();
        let tenant = storage
            .create_tenant("acme".into(), None, "admin".into(), "x".into())
            .await
            .unwrap();
        let router = storage
            .create_router(
                tenant,
                system_actor("test"),
                RouterInput {
                    name: "POP North".into(),
                    ip_address: "10.0.0.1".into(),
                    location: None,
                },
            )
            .await
            .unwrap()
            .id;
        (dir, storage, tenant, router)
    }

    async fn token(storage: &Storage, tenant: Uuid, router: Uuid, valid_for: i64) -> Vec<u8> {
        let hash = crate::secrets::token_hash(&Uuid::now_v7().to_string());
        storage
            .create_enroll_token(
                tenant,
                system_actor("test"),
                router,
                EnrollToken {
                    token_hash: hash.clone(),
                    expires_at: Utc::now() + chrono::Duration::seconds(valid_for),
                },
            )
            .await
            .unwrap();
        hash
    }

    #[tokio::test]
    async fn a_token_redeems_once_into_an_agent_account() {
        let (_dir, storage, tenant, router) = storage_with_router().await;
        let hash = token(&storage, tenant, router, 600).await;
        let enrolled = storage
            .redeem_enroll_token(hash.clone(), "$7$h1".into())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            enrolled,
            Enrolled {
                tenant_id: tenant,
                router_id: router,
                router_name: "POP North".into()
            }
        );
        assert_eq!(
            storage
                .redeem_enroll_token(hash, "$7$h2".into())
                .await
                .unwrap(),
            None
        );
        let accounts = storage.broker_accounts().await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].username, router.to_string());
        assert_eq!(accounts[0].kind, AccountKind::Agent);
        assert_eq!(accounts[0].password_hash, "$7$h1");
        assert!(!format!("{accounts:?}").contains("$7$h1"));

        // Re-enrolling with a new token rotates the password.
        let again = token(&storage, tenant, router, 600).await;
        storage
            .redeem_enroll_token(again, "$7$h3".into())
            .await
            .unwrap()
            .unwrap();
        let accounts = storage.broker_accounts().await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].password_hash, "$7$h3");
    }

    #[tokio::test]
    async fn expired_unknown_and_deleted_router_tokens_redeem_nothing() {
        let (_dir, storage, tenant, router) = storage_with_router().await;
        let expired = token(&storage, tenant, router, -1).await;
        assert_eq!(
            storage
                .redeem_enroll_token(expired, "h".into())
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            storage
                .redeem_enroll_token(vec![1, 2, 3], "h".into())
                .await
                .unwrap(),
            None
        );
        let live = token(&storage, tenant, router, 600).await;
        storage
            .delete_router(tenant, system_actor("test"), router)
            .await
            .unwrap();
        assert_eq!(
            storage.redeem_enroll_token(live, "h".into()).await.unwrap(),
            None
        );
        assert!(storage.broker_accounts().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn deleted_routers_accounts_are_not_served_and_revocation_removes_them() {
        let (_dir, storage, tenant, router) = storage_with_router().await;
        storage
            .set_agent_account(tenant, router, system_actor("test"), "$7$a".into())
            .await
            .unwrap();
        storage
            .put_broker_account(
                "easyisp-central".into(),
                AccountKind::Central,
                "$7$c".into(),
            )
            .await
            .unwrap();
        storage
            .put_broker_account("noc".into(), AccountKind::Monitor, "$7$m".into())
            .await
            .unwrap();
        assert_eq!(storage.broker_accounts().await.unwrap().len(), 3);
        // A monitor cannot take over central's name.
        assert!(matches!(
            storage
                .put_broker_account("easyisp-central".into(), AccountKind::Monitor, "x".into())
                .await,
            Err(StorageError::Conflict { .. })
        ));
        assert!(
            storage
                .revoke_agent_account(tenant, system_actor("test"), router)
                .await
                .unwrap()
        );
        assert!(
            !storage
                .revoke_agent_account(tenant, system_actor("test"), router)
                .await
                .unwrap()
        );
        assert!(matches!(
            storage
                .revoke_agent_account(Uuid::now_v7(), system_actor("test"), router)
                .await,
            Err(StorageError::NotFound)
        ));
        storage
            .set_agent_account(tenant, router, system_actor("test"), "$7$b".into())
            .await
            .unwrap();
        storage
            .delete_router(tenant, system_actor("test"), router)
            .await
            .unwrap();
        let names: Vec<String> = storage
            .broker_accounts()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.username)
            .collect();
        assert_eq!(names, ["easyisp-central", "noc"]);
        assert!(storage.remove_agent_account(router).await.unwrap());
        assert!(
            storage
                .delete_broker_account("noc".into(), AccountKind::Monitor)
                .await
                .unwrap()
        );
    }
}
