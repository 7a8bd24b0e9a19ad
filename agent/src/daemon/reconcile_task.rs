//! The reconcile task: a level-triggered loop that makes the router match the replica on every
//! change, at the expiry task's request, and in full every reconcile interval. A change to a
//! few customers (and nothing else) runs a targeted pass over just their objects; everything
//! else runs a full pass. A pass that could not reach the router is retried, in full, with
//! capped exponential backoff and jitter.

use super::state::{self, LastReconcile};
use super::timekeeping::{expiry_inputs, read_clock};
use super::{Shared, backoff};
use crate::expiry::plan::{Gate, GateInputs, MassCutoffPolicy, gate};
use crate::reconcile::desired::Builder;
use crate::reconcile::plan::{Op, plan};
use crate::reconcile::run::{Report, apply, reconcile};
use crate::reconcile::targeted::{self, NeedsFullPass};
use crate::replica::store;
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::ClockState;
use easyisp_protocol::session::SessionKind;
use std::collections::BTreeSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// Why a pass runs (for logs).
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Periodic,
    Change,
    Expiry,
    Retry,
}

pub async fn run(shared: Shared, cancel: CancellationToken) {
    let mut interval = tokio::time::interval(shared.config.reconcile_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut retry_at: Option<Instant> = None;
    let mut attempt = 0u32;
    loop {
        let trigger = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => Trigger::Periodic,
            _ = shared.changed.notified() => Trigger::Change,
            _ = shared.reconcile_now.notified() => Trigger::Expiry,
            _ = sleep_until_some(retry_at) => Trigger::Retry,
        };
        // Taken before the replica is read: a change committed after this point is seen by
        // the next pass, which its notification wakes.
        let dirty = shared.take_dirty();
        let targeted = match trigger {
            Trigger::Change if !dirty.full => {
                if dirty.customers.is_empty() {
                    // A pass since the notification already covered it.
                    continue;
                }
                (dirty.customers.len() <= targeted::MAX_CUSTOMERS).then_some(dirty.customers)
            }
            _ => None,
        };
        // Instrumented, not entered: an entered span held across an await leaks into whatever
        // else runs on this thread meanwhile (the sync task's logs showed up "in" reconciles).
        let span =
            tracing::info_span!("reconcile", router = %shared.config.router_id, trigger = ?trigger);
        let outcome = async {
            if let Some(customers) = &targeted {
                match reconcile_customers(&shared, Utc::now(), customers).await {
                    Ok(Ok(report)) => return Ok(report),
                    Ok(Err(NeedsFullPass(reason))) => {
                        tracing::debug!(%reason, "targeted pass handed over to a full pass");
                    }
                    Err(e) => return Err(e),
                }
            }
            reconcile_once(&shared, Utc::now()).await
        }
        .instrument(span.clone())
        .await;
        let _enter = span.enter();
        match outcome {
            Ok(report) if report.aborted.is_none() => {
                attempt = 0;
                retry_at = None;
                if report.applied > 0 || !report.failed.is_empty() {
                    tracing::info!(
                        applied = report.applied,
                        failed = report.failed.len(),
                        blocked = report.blocked,
                        duration_ms = report.duration.as_millis() as u64,
                        "reconcile pass done"
                    );
                }
            }
            Ok(_) | Err(_) => {
                // The retry is a full pass, which covers whatever this one was about.
                let wait = backoff(attempt);
                attempt = attempt.saturating_add(1);
                retry_at = Some(Instant::now() + wait);
                tracing::warn!(
                    retry_in_ms = wait.as_millis() as u64,
                    "reconcile pass incomplete; will retry"
                );
            }
        }
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A targeted pass at `now` over `customers` (see [`targeted`]): their desired objects from
/// the replica, their observed objects from filtered reads, the ordinary plan, applied.
/// Hands over to a full pass (`Ok(Err(..))`) when the clock is not trusted, a hold is in
/// force, no full pass has enforced expiry yet, or the router view is ambiguous. It does not
/// move the enforcement mark (only a full pass enforces every customer).
async fn reconcile_customers(
    shared: &Shared,
    now: DateTime<Utc>,
    customers: &BTreeSet<Uuid>,
) -> anyhow::Result<Result<Report, NeedsFullPass>> {
    let synchronised = shared.clock_synchronised();
    let router = shared.config.router_id;
    let ids = customers.clone();
    let desired = shared
        .replica
        .read(move |conn| {
            let (clock, _) = read_clock(conn, now, synchronised)?;
            if clock != ClockState::Synchronised {
                return Ok(Err(NeedsFullPass(format!("clock {clock:?}"))));
            }
            if state::held(conn)?.is_some() {
                return Ok(Err(NeedsFullPass("a mass cut-off is held".into())));
            }
            if state::get_time(conn, state::LAST_ENFORCED)?.is_none() {
                return Ok(Err(NeedsFullPass("no full pass yet".into())));
            }
            let mut builder = Builder::new(router, store::packages(conn)?, Gate::open(now), now);
            for id in &ids {
                if let Some(customer) = store::load_customer(conn, *id)? {
                    builder.add(&customer);
                }
            }
            Ok(Ok(targeted::restrict(builder.finish())))
        })
        .await?;
    let desired = match desired {
        Ok(desired) => desired,
        Err(handover) => return Ok(Err(handover)),
    };
    for (owner, problem) in &desired.problems {
        tracing::warn!(%owner, "{problem}");
    }
    let started = std::time::Instant::now();
    let link = shared.router.get().await;
    let outcome = match link {
        Ok(link) => match targeted::observe(link.as_ref(), &desired, customers).await {
            Ok(Ok(observed)) => {
                let planned = plan(&desired, &observed);
                let mut report = apply(link.as_ref(), &planned).await;
                report.duration = started.elapsed();
                remember_kicks(shared, &planned.ops);
                Ok(report)
            }
            Ok(Err(handover)) => return Ok(Err(handover)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match outcome {
        Ok(report) => {
            tracing::debug!(
                customers = customers.len(),
                applied = report.applied,
                duration_ms = report.duration.as_millis() as u64,
                "targeted reconcile pass"
            );
            Ok(Ok(report))
        }
        Err(e) => {
            shared.router.reset_if(&e).await;
            tracing::warn!(error = %e, "router unreachable");
            Ok(Ok(Report {
                aborted: Some(e.to_string()),
                ..Report::default()
            }))
        }
    }
}

/// One full pass at `now`: compute the expiry gate and the desired state from the replica,
/// then observe, plan and apply. Records the outcome in the agent's state.
pub async fn reconcile_once(shared: &Shared, now: DateTime<Utc>) -> anyhow::Result<Report> {
    let synchronised = shared.clock_synchronised();
    let policy = MassCutoffPolicy {
        share_percent: shared.config.mass_cutoff_percent,
        min_customers: shared.config.mass_cutoff_min,
    };
    let router = shared.config.router_id;
    let (gate, packages) = shared
        .replica
        .read(move |conn| {
            let inputs = expiry_inputs(conn, router, now)?;
            let (clock, last_trusted) = read_clock(conn, now, synchronised)?;
            let held_since = state::held(conn)?.map(|h| h.since);
            let gate = gate(
                &inputs,
                &GateInputs {
                    now,
                    clock,
                    last_trusted,
                    last_enforced: state::get_time(conn, state::LAST_ENFORCED)?,
                    policy,
                    mass_confirmed: state::get_state_flag(conn, state::MASS_CUTOFF_CONFIRMED)?,
                    held_since,
                },
            );
            Ok((gate, store::packages(conn)?))
        })
        .await?;
    let builder_gate = gate.clone();
    let desired = shared
        .replica
        .read(move |conn| {
            let mut builder = Builder::new(router, packages, builder_gate, now);
            store::for_each_customer(conn, |c| builder.add(&c))?;
            Ok(builder.finish())
        })
        .await?;
    for (owner, problem) in &desired.problems {
        tracing::warn!(%owner, "{problem}");
    }
    let outcome = match shared.router.get().await {
        Ok(router) => reconcile(router.as_ref(), &desired).await,
        Err(e) => Err(e),
    };
    let (report, error) = match outcome {
        Ok((plan, report)) => {
            remember_kicks(shared, &plan.ops);
            (report, None)
        }
        Err(e) => {
            shared.router.reset_if(&e).await;
            tracing::warn!(error = %e, "router unreachable");
            (
                Report {
                    aborted: Some(e.to_string()),
                    ..Report::default()
                },
                Some(e.to_string()),
            )
        }
    };
    record(shared, now, &gate, &report, error).await?;
    Ok(report)
}

fn remember_kicks(shared: &Shared, ops: &[Op]) {
    let kicked: Vec<(SessionKind, String)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::KickPpp { name, .. } => Some((SessionKind::Pppoe, name.to_string_lossy())),
            Op::KickHotspot { name, .. } => Some((SessionKind::Hotspot, name.to_string_lossy())),
            _ => None,
        })
        .collect();
    if !kicked.is_empty()
        && let Ok(mut list) = shared.kicked.lock()
    {
        list.extend(kicked);
    }
}

async fn record(
    shared: &Shared,
    now: DateTime<Utc>,
    gate: &Gate,
    report: &Report,
    error: Option<String>,
) -> anyhow::Result<()> {
    let last = LastReconcile {
        at: now,
        ok: report.is_clean(),
        applied: report.applied,
        failed: report.failed.len(),
        blocked: report.blocked,
        duration_ms: report.duration.as_millis() as u64,
        error: error.clone().or_else(|| report.aborted.clone()),
    };
    let gate = gate.clone();
    let reached = report.aborted.is_none();
    let router_errors = report.failed.len() as u64 + u64::from(!reached);
    shared.metrics.reconciled(report.is_clean(), router_errors);
    shared
        .replica
        .write(move |tx| {
            state::set_json(tx, state::LAST_RECONCILE, &last)?;
            state::set_json(tx, state::ROUTER_REACHABLE, &reached)?;
            let clock = match &gate.hold {
                Some(crate::expiry::plan::Hold::Clock(c)) => *c,
                _ => ClockState::Synchronised,
            };
            state::set_json(tx, state::CLOCK, &clock)?;
            match &gate.hold {
                Some(crate::expiry::plan::Hold::MassCutoff(hold)) => {
                    state::set_json(tx, state::MASS_CUTOFF_HOLD, hold)?;
                }
                _ if reached => {
                    // Enforced through `enforce_through` on the router: remember it, and drop a
                    // consumed confirmation or a hold that no longer applies.
                    state::set_time(tx, state::LAST_ENFORCED, gate.enforce_through)?;
                    state::clear(tx, state::MASS_CUTOFF_HOLD)?;
                    state::clear(tx, state::MASS_CUTOFF_CONFIRMED)?;
                }
                _ => {}
            }
            if clock == ClockState::Synchronised {
                state::trust_until(tx, now)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}
