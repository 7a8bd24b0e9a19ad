//! Applies a reconcile plan to the router: the I/O shell around `plan`.
//!
//! Reads every menu once (never one request per customer), comparing objects with the desired
//! state as they arrive, and applies operations in the planned order. An operation that fails with a client-side error (invalid value, a name
//! taken meanwhile) is reported and the rest go on; a connection error stops the pass, since
//! every later operation would fail the same way, and the caller retries with backoff.

use super::CUTOFF_LIST;
use super::desired::Desired;
use super::plan::{Menus, Op, Plan};
use crate::routeros::status::{HOTSPOT_ACTIVE_MENU, PPP_ACTIVE_MENU};
use crate::routeros::{AddressListEntry, Id, Router, RouterError, Text, each_object};
use std::time::{Duration, Instant};

/// What one reconcile pass did.
#[derive(Debug, Default)]
pub struct Report {
    pub planned: usize,
    pub applied: usize,
    /// `(operation, error)` for operations that failed and were skipped.
    pub failed: Vec<(String, String)>,
    /// Desired objects blocked by router objects that EasyISP does not own.
    pub blocked: usize,
    /// Set when the pass stopped early because the router could not be reached.
    pub aborted: Option<String>,
    pub duration: Duration,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.failed.is_empty() && self.aborted.is_none()
    }
}

/// One full pass: observe and plan, then apply.
pub async fn reconcile(
    router: &dyn Router,
    desired: &Desired,
) -> Result<(Plan, Report), RouterError> {
    let started = Instant::now();
    let planned = observe_and_plan(router, desired).await?;
    let mut report = apply(router, &planned).await;
    report.duration = started.elapsed();
    Ok((planned, report))
}

/// Reads every menu once (one list request each) and compares each object with the desired
/// state as it arrives, so only the objects that must change are kept; then reads the live
/// sessions' ids and names and picks the ones to drop. The menus are read one after the
/// other: a router's REST server answers requests serially and the SSH driver has one
/// session (routeros.md §1.8), so concurrent reads gain little and would hold several
/// replies in flight at once.
pub async fn observe_and_plan(router: &dyn Router, desired: &Desired) -> Result<Plan, RouterError> {
    let mut menus = Menus::new(desired);
    each_object(router, &[], |o| menus.ppp_profiles.visit(o)).await?;
    each_object(router, &[], |o| menus.hotspot_profiles.visit(o)).await?;
    each_object(router, &[], |o| menus.ppp_secrets.visit(o)).await?;
    each_object(router, &[], |o| menus.hotspot_users.visit(o)).await?;
    each_object(router, &[], |o| menus.queues.visit(o)).await?;
    let cutoff_list = [("list", Text::from(CUTOFF_LIST))];
    each_object(router, &cutoff_list, |o: AddressListEntry| {
        if o.list == CUTOFF_LIST {
            menus.cutoffs.visit(o);
        }
    })
    .await?;
    let sessions = menus.finish();
    let ppp = sessions_to_drop(router, PPP_ACTIVE_MENU, "name", |name| {
        sessions.drops_ppp(name)
    })
    .await?;
    let hotspot = sessions_to_drop(router, HOTSPOT_ACTIVE_MENU, "user", |user| {
        sessions.drops_hotspot(user)
    })
    .await?;
    Ok(sessions.finish(ppp, hotspot))
}

/// `(id, name)` of the live sessions in `menu` whose `key` (the user name) `drops` picks: only
/// those two properties are read, and only the picked sessions are kept.
async fn sessions_to_drop(
    router: &dyn Router,
    menu: &str,
    key: &str,
    drops: impl Fn(&[u8]) -> bool + Send + Sync,
) -> Result<Vec<(Id, Text)>, RouterError> {
    let mut picked = Vec::new();
    let mut failed = None;
    router
        .print_each(menu, &[], &[".id", key], &mut |row| {
            let name = row.text(key);
            if drops(name.as_bytes()) {
                match row.id() {
                    Ok(id) => picked.push((id, name)),
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
        })
        .await?;
    match failed {
        Some(e) => Err(e),
        None => Ok(picked),
    }
}

/// Applies the operations in order.
pub async fn apply(router: &dyn Router, plan: &Plan) -> Report {
    let mut report = Report {
        planned: plan.ops.len(),
        blocked: plan.blocked.len(),
        ..Report::default()
    };
    for (owner, reason) in &plan.blocked {
        tracing::warn!(%owner, "{reason}");
    }
    for op in &plan.ops {
        let description = op.describe();
        match apply_one(router, op).await {
            Ok(()) => {
                report.applied += 1;
                tracing::info!(change = %description, "router changed");
            }
            Err(e) if e.is_connection_error() => {
                tracing::warn!(change = %description, error = %e, "router unreachable; reconcile pass stopped");
                report.aborted = Some(e.to_string());
                break;
            }
            Err(e) => {
                tracing::warn!(change = %description, error = %e, "router refused a change");
                report.failed.push((description, e.to_string()));
            }
        }
    }
    report
}

async fn apply_one(router: &dyn Router, op: &Op) -> Result<(), RouterError> {
    match op {
        Op::CreatePppProfile(s) => router.create_ppp_profile(s).await.map(drop),
        Op::UpdatePppProfile(id, s) => router.update_ppp_profile(id, s).await.map(drop),
        Op::CreateHotspotProfile(s) => router.create_hotspot_user_profile(s).await.map(drop),
        Op::UpdateHotspotProfile(id, s) => {
            router.update_hotspot_user_profile(id, s).await.map(drop)
        }
        Op::CreatePppSecret(s) => router.create_ppp_secret(s).await.map(drop),
        Op::UpdatePppSecret(id, s) => router.update_ppp_secret(id, s).await.map(drop),
        Op::CreateHotspotUser(s) => router.create_hotspot_user(s).await.map(drop),
        Op::UpdateHotspotUser(id, s) => router.update_hotspot_user(id, s).await.map(drop),
        Op::CreateQueue(s) => router.create_simple_queue(s).await.map(drop),
        Op::UpdateQueue(id, s) => router.update_simple_queue(id, s).await.map(drop),
        Op::CreateCutoff(s) => router.create_address_list_entry(s).await.map(drop),
        // A session that ended between the read and the removal is what we wanted.
        Op::KickPpp { id, .. } => ignore_missing(router.remove_ppp_session(id).await),
        Op::KickHotspot { id, .. } => ignore_missing(router.remove_hotspot_session(id).await),
        Op::RemoveCutoff(e) => ignore_missing(router.remove_address_list_entry(e).await),
        Op::RemoveQueue(q) => ignore_missing(router.remove_simple_queue(q).await),
        Op::RemovePppSecret(s) => ignore_missing(router.remove_ppp_secret(s).await),
        Op::RemoveHotspotUser(u) => ignore_missing(router.remove_hotspot_user(u).await),
        Op::RemovePppProfile(p) => ignore_missing(router.remove_ppp_profile(p).await),
        Op::RemoveHotspotProfile(p) => ignore_missing(router.remove_hotspot_user_profile(p).await),
    }
}

fn ignore_missing(result: Result<(), RouterError>) -> Result<(), RouterError> {
    match result {
        Err(RouterError::NotFound(_)) => Ok(()),
        other => other,
    }
}
