//! What the agent says about itself: the retained `status` (online after every connection,
//! offline as the Last Will and on a clean shutdown) and the periodic `telemetry`.

use crate::daemon::Shared;
use crate::daemon::state::{self, LastReconcile};
use crate::replica::store;
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::{ClockState, PROTOCOL_VERSION, Status, Telemetry};
use uuid::Uuid;

pub fn online(
    router: Uuid,
    session: u64,
    epoch: &str,
    applied_through: u64,
    started_at: DateTime<Utc>,
) -> Status {
    Status {
        v: PROTOCOL_VERSION,
        router,
        online: true,
        session,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        started_at: Some(started_at),
        epoch: Some(epoch.to_string()),
        applied_through: Some(applied_through),
    }
}

pub fn offline(router: Uuid, session: u64) -> Status {
    Status {
        v: PROTOCOL_VERSION,
        router,
        online: false,
        session,
        agent_version: None,
        started_at: None,
        epoch: None,
        applied_through: None,
    }
}

/// Reads the agent's health from the replica (what the other tasks recorded).
pub async fn telemetry(shared: &Shared, now: DateTime<Utc>) -> crate::replica::Result<Telemetry> {
    let router = shared.config.router_id;
    let clock_if_unknown = if shared.clock_synchronised() {
        ClockState::Synchronised
    } else {
        ClockState::Unsynchronised
    };
    shared
        .replica
        .read(move |conn| {
            Ok(Telemetry {
                v: PROTOCOL_VERSION,
                router,
                at: now,
                router_reachable: state::get_json(conn, state::ROUTER_REACHABLE)?.unwrap_or(false),
                customers: store::customer_count_for_router(conn, router)?,
                active_sessions: store::active_session_count(conn)?,
                outbox_depth: store::outbox_depth(conn)?,
                last_reconcile: state::get_json::<LastReconcile>(conn, state::LAST_RECONCILE)?
                    .map(|r| r.at),
                clock: state::get_json(conn, state::CLOCK)?.unwrap_or(clock_if_unknown),
                mass_cutoff_hold: state::held(conn)?,
            })
        })
        .await
}
