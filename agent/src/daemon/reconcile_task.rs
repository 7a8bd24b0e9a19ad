//! The reconcile task: a level-triggered loop that makes the router match the replica on every
//! change, at the expiry task's request, and in full every reconcile interval. A pass that
//! could not reach the router is retried with capped exponential backoff and jitter.

use super::state::{self, LastReconcile};
use super::timekeeping::{expiry_inputs, read_clock};
use super::{Shared, backoff};
use crate::expiry::plan::{Gate, GateInputs, MassCutoffPolicy, gate};
use crate::reconcile::desired::Builder;
use crate::reconcile::plan::Op;
use crate::reconcile::run::{Report, reconcile};
use crate::replica::store;
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::ClockState;
use easyisp_protocol::session::SessionKind;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

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
        // Instrumented, not entered: an entered span held across an await leaks into whatever
        // else runs on this thread meanwhile (the sync task's logs showed up "in" reconciles).
        let span =
            tracing::info_span!("reconcile", router = %shared.config.router_id, trigger = ?trigger);
        let outcome = reconcile_once(&shared, Utc::now())
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
