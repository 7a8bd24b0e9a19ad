//! Applies a reconcile plan to the router: the I/O shell around `plan`.
//!
//! Reads every menu once (never one request per customer), plans, and applies operations in
//! the planned order. An operation that fails with a client-side error (invalid value, a name
//! taken meanwhile) is reported and the rest go on; a connection error stops the pass, since
//! every later operation would fail the same way, and the caller retries with backoff.

use super::desired::Desired;
use super::plan::{Observed, Op, Plan, plan};
use crate::routeros::{Router, RouterError};
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

/// Reads the router's current state: one list read per menu, run concurrently.
pub async fn observe(router: &dyn Router) -> Result<Observed, RouterError> {
    let (ppp_profiles, hotspot_profiles, ppp_secrets, hotspot_users) = tokio::try_join!(
        router.ppp_profiles(),
        router.hotspot_user_profiles(),
        router.ppp_secrets(),
        router.hotspot_users(),
    )?;
    let (queues, address_list, ppp_sessions, hotspot_sessions) = tokio::try_join!(
        router.simple_queues(),
        router.address_list_entries(),
        router.ppp_sessions(),
        router.hotspot_sessions(),
    )?;
    Ok(Observed {
        ppp_profiles,
        hotspot_profiles,
        ppp_secrets,
        hotspot_users,
        queues,
        address_list,
        ppp_sessions,
        hotspot_sessions,
    })
}

/// One full pass: observe, plan, apply.
pub async fn reconcile(
    router: &dyn Router,
    desired: &Desired,
) -> Result<(Plan, Report), RouterError> {
    let started = Instant::now();
    let observed = observe(router).await?;
    let planned = plan(desired, &observed);
    let mut report = apply(router, &planned).await;
    report.duration = started.elapsed();
    Ok((planned, report))
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
