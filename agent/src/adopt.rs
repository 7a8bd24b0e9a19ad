//! `easyisp-agent adopt`: takes over PPP secrets and hotspot users that were on the router
//! before EasyISP (an ISP migrating from another billing system).
//!
//! Without `--apply` it only lists what it would adopt and why some cannot be. With it, each
//! adoptable object becomes a customer in the replica (synced to central like any other
//! change) and gets our marker in its comment, so the reconcile controller owns it from then
//! on. The object's old comment is kept in the customer's audit event.

use crate::config::Config;
use crate::daemon::state;
use crate::reconcile::{marker, owner_of};
use crate::replica::{Replica, store};
use crate::routeros::{HotspotUser, PppSecret, Router, Text};
use chrono::Utc;
use easyisp_protocol::audit::{AuditEvent, FieldChange, secret_change};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::envelope::ChangeBody;
use easyisp_protocol::ledger::{Actor, ActorKind};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::validate;
use serde::Serialize;
use std::collections::HashMap;
use uuid::Uuid;

/// One object found on the router that nobody owns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub kind: ConnectionType,
    pub name: String,
    pub profile: String,
    pub disabled: bool,
    /// The package whose name matches the profile, if any.
    pub package: Option<Uuid>,
    /// Why it cannot be adopted; `None` when it can.
    pub problem: Option<String>,
    #[serde(skip)]
    id: crate::routeros::Id,
    #[serde(skip)]
    password: Option<String>,
    #[serde(skip)]
    comment: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AdoptReport {
    pub candidates: Vec<Candidate>,
    pub adopted: usize,
    pub applied: bool,
}

/// Lists unowned secrets and hotspot users; with `apply`, adopts the adoptable ones.
pub async fn adopt(
    config: &Config,
    router: &dyn Router,
    apply: bool,
) -> anyhow::Result<AdoptReport> {
    let replica = Replica::open(&config.replica_path())?;
    let packages: HashMap<String, Uuid> = replica
        .read(|c| {
            Ok(store::packages(c)?
                .into_iter()
                .filter(|p| !p.is_deleted())
                .map(|p| (p.package_name().to_string(), p.id))
                .collect())
        })
        .await?;
    let (secrets, users) = tokio::try_join!(router.ppp_secrets(), router.hotspot_users())?;
    let mut candidates: Vec<Candidate> = secrets
        .iter()
        .filter(|s| !is_owned(&s.comment))
        .map(|s| candidate_from_secret(s, &packages))
        .chain(
            users
                .iter()
                .filter(|u| !is_owned(&u.comment) && !u.dynamic)
                .map(|u| candidate_from_user(u, &packages)),
        )
        .collect();
    let mut adopted = 0;
    if apply {
        for candidate in candidates.iter_mut().filter(|c| c.problem.is_none()) {
            match adopt_one(config, &replica, router, candidate).await {
                Ok(()) => adopted += 1,
                Err(e) => candidate.problem = Some(format!("adoption failed: {e}")),
            }
        }
    }
    Ok(AdoptReport {
        candidates,
        adopted,
        applied: apply,
    })
}

fn is_owned(comment: &Option<Text>) -> bool {
    comment
        .as_ref()
        .is_some_and(|c| owner_of(&c.to_string_lossy()).is_some())
}

fn check(name: &Text, password: Option<&str>) -> Option<String> {
    let Some(name) = name.as_str() else {
        return Some("name is not UTF-8 (router code page); rename it on the router first".into());
    };
    if let Err(e) = validate::username(name) {
        return Some(e.to_string());
    }
    match password {
        None => Some("password not readable: give the router user the `sensitive` policy".into()),
        Some("") => Some("has no password".into()),
        Some(_) => None,
    }
}

fn candidate_from_secret(s: &PppSecret, packages: &HashMap<String, Uuid>) -> Candidate {
    let password = s.password.as_ref().map(|p| p.expose().clone());
    let profile = s.profile.to_string_lossy();
    let service_problem = (!matches!(s.service.as_bytes(), b"pppoe" | b"any"))
        .then(|| format!("service {} is not PPPoE", s.service));
    Candidate {
        kind: ConnectionType::Pppoe,
        name: s.name.to_string_lossy(),
        package: packages.get(&profile).copied(),
        profile,
        disabled: s.disabled,
        problem: check(&s.name, password.as_deref()).or(service_problem),
        id: s.id.clone(),
        password,
        comment: s.comment.as_ref().map(Text::to_string_lossy),
    }
}

fn candidate_from_user(u: &HotspotUser, packages: &HashMap<String, Uuid>) -> Candidate {
    let password = u.password.as_ref().map(|p| p.expose().clone());
    let profile = u.profile.to_string_lossy();
    Candidate {
        kind: ConnectionType::Hotspot,
        name: u.name.to_string_lossy(),
        package: packages.get(&profile).copied(),
        profile,
        disabled: u.disabled,
        problem: check(&u.name, password.as_deref()),
        id: u.id.clone(),
        password,
        comment: u.comment.as_ref().map(Text::to_string_lossy),
    }
}

async fn adopt_one(
    config: &Config,
    replica: &Replica,
    router: &dyn Router,
    c: &Candidate,
) -> anyhow::Result<()> {
    let id = Uuid::now_v7();
    let tenant = config.tenant_id;
    let router_id = config.router_id;
    let node = easyisp_protocol::NodeId::from_uuid(router_id);
    let candidate = c.clone();
    let now = Utc::now();
    // Record the customer first: a router object marked for a customer the replica does not
    // know would be removed by the next reconcile. A customer of that name adopted before (an
    // interrupted run) is reused; one of another router is not taken over (its objects here
    // would be removed: the reconcile treats customers of other routers as absent).
    let id = replica
        .write(move |tx| {
            if let Some(existing) = store::customer_by_username(tx, &candidate.name)? {
                if existing.router() != Some(router_id) {
                    return Ok(Err(format!(
                        "customer {} with this username belongs to another router",
                        existing.id
                    )));
                }
                return Ok(Ok(existing.id));
            }
            let stamp = state::tick(tx, node, now)?;
            let mut record = CustomerRecord::empty(id, tenant);
            record.username = Some(Lww::new(candidate.name.clone(), stamp));
            record.name = Some(Lww::new(candidate.name.clone(), stamp));
            record.password = Some(Lww::new(
                SyncedSecret::new(candidate.password.clone().unwrap_or_default()),
                stamp,
            ));
            record.connection_type = Some(Lww::new(candidate.kind, stamp));
            record.package_id = Some(Lww::new(candidate.package, stamp));
            record.router_id = Some(Lww::new(Some(router_id), stamp));
            record.expires_at = Some(Lww::new(None, stamp));
            record.disabled = Some(Lww::new(candidate.disabled, stamp));
            record.suspended = Some(Lww::new(false, stamp));
            record.created_at = Some(Lww::new(now, stamp));
            store::merge_customer(tx, &record)?;
            let audit = AuditEvent {
                id: Uuid::now_v7(),
                tenant_id: tenant,
                entity: "customer".into(),
                entity_id: id,
                at: now,
                actor: Actor {
                    kind: ActorKind::Agent,
                    id: Some(router_id),
                    name: "adopt".into(),
                },
                action: "adopt".into(),
                changes: vec![
                    FieldChange {
                        field: "username".into(),
                        old: serde_json::Value::Null,
                        new: candidate.name.clone().into(),
                    },
                    FieldChange {
                        field: "password".into(),
                        old: serde_json::Value::Null,
                        new: secret_change(),
                    },
                    FieldChange {
                        field: "routerComment".into(),
                        old: candidate
                            .comment
                            .clone()
                            .map_or(serde_json::Value::Null, Into::into),
                        new: marker(id).into(),
                    },
                ],
            };
            store::enqueue(tx, &ChangeBody::Customer(Box::new(record)), now)?;
            store::enqueue(tx, &ChangeBody::Audit(audit), now)?;
            Ok(Ok(id))
        })
        .await?
        .map_err(|reason| anyhow::anyhow!(reason))?;
    // Then mark the router object. Both steps are idempotent, so an interrupted adoption is
    // finished by running `adopt --apply` again.
    let marked = Text::from(marker(id));
    match c.kind {
        ConnectionType::Hotspot => {
            let users = router.hotspot_users().await?;
            let user = users
                .iter()
                .find(|u| u.id == c.id)
                .ok_or_else(|| anyhow::anyhow!("hotspot user vanished"))?;
            let spec = crate::routeros::HotspotUserSpec {
                name: user.name.clone(),
                password: user.password.clone().unwrap_or_default(),
                profile: user.profile.clone(),
                server: user.server.clone(),
                mac_address: user.mac_address.clone(),
                address: user.address.clone(),
                disabled: user.disabled,
                comment: Some(marked),
                limit_uptime: user.limit_uptime,
                limit_bytes_total: user.limit_bytes_total,
            };
            router.update_hotspot_user(&user.id, &spec).await?;
        }
        _ => {
            let secrets = router.ppp_secrets().await?;
            let secret = secrets
                .iter()
                .find(|s| s.id == c.id)
                .ok_or_else(|| anyhow::anyhow!("secret vanished"))?;
            let spec = crate::routeros::PppSecretSpec {
                name: secret.name.clone(),
                password: secret.password.clone().unwrap_or_default(),
                service: secret.service.clone(),
                profile: secret.profile.clone(),
                disabled: secret.disabled,
                comment: Some(marked),
                local_address: secret.local_address.clone(),
                remote_address: secret.remote_address.clone(),
                caller_id: secret.caller_id.clone(),
            };
            router.update_ppp_secret(&secret.id, &spec).await?;
        }
    }
    tracing::info!(customer = %id, name = %c.name, kind = %c.kind, "adopted router object as a customer");
    Ok(())
}
