//! Storage side of sync with the agents (docs/sync.md): the downstream outbox written in the
//! transaction of every change (`outbox`), the per-router cursors, presence and snapshots
//! (`down`), and the upstream apply of an agent's batch in one transaction (`apply`).
//!
//! Nothing here speaks MQTT: `crate::sync` calls these functions and publishes what they
//! return. What must stay true:
//! - a `sync_down` row commits with its change or not at all (`Tx::flush`);
//! - an upstream batch, its merges and `up_applied` commit together, and a change this side
//!   cannot apply is rejected on its own without blocking the batch;
//! - rows are deleted only when the agent's cumulative ack (or a snapshot's) covers them.

mod apply;
mod convert;
mod down;
mod entries;
mod horizon;
pub(crate) mod outbox;
mod presence;

pub use apply::{RawBatch, UpOutcome};
pub use down::{AckOutcome, DownRead, RouterSyncInfo, RouterSyncView, Snapshot};
pub use outbox::DownSignal;
pub use presence::{BirthPlan, Presence, plan_birth};

use easyisp_protocol::ledger::{Actor, ActorKind};
use uuid::Uuid;

/// The actor of everything an agent writes at central: its router.
pub fn agent_actor(router: Uuid, router_name: &str) -> Actor {
    Actor {
        kind: ActorKind::Agent,
        id: Some(router),
        name: router_name.to_string(),
    }
}

#[cfg(test)]
mod tests;
