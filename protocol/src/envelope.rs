//! Versioned JSON envelopes carried on the MQTT topics of `topics.rs`.
//!
//! Every envelope has `"v"`, the wire format's major version. A receiver refuses (parks) an
//! envelope whose major it does not know instead of guessing. Additive changes (new optional
//! fields) keep the major. Golden files in `tests/golden/` make any format change visible.

use crate::audit::AuditEvent;
use crate::customer::CustomerRecord;
use crate::ledger::LedgerEntry;
use crate::package::PackageRecord;
use crate::session::SessionRecord;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

/// The wire format major version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// A change batch carries at most this many changes ...
pub const MAX_BATCH_CHANGES: usize = 200;
/// ... and aims to stay under this many bytes of JSON, far below the broker's packet limit.
pub const TARGET_BATCH_BYTES: usize = 64 * 1024;
/// The largest MQTT packet either side sends or accepts (configure the broker to match).
pub const MAX_PACKET_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EnvelopeError {
    #[error("envelope version {found} is newer than this program's {PROTOCOL_VERSION}: upgrade it")]
    Unsupported { found: u32 },
    #[error("malformed envelope: {0}")]
    Malformed(String),
}

/// Parses an envelope and checks its version first, so a newer peer's message is reported as
/// "upgrade needed", not as a confusing field error.
pub fn decode<T: for<'de> Deserialize<'de>>(payload: &[u8]) -> Result<T, EnvelopeError> {
    #[derive(Deserialize)]
    struct VersionOnly {
        v: u32,
    }
    let version: VersionOnly =
        serde_json::from_slice(payload).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    if version.v > PROTOCOL_VERSION || version.v == 0 {
        return Err(EnvelopeError::Unsupported { found: version.v });
    }
    serde_json::from_slice(payload).map_err(|e| EnvelopeError::Malformed(e.to_string()))
}

/// Serialises an envelope. Our envelope types contain no maps with non-string keys and no
/// non-finite numbers, the only things that make serde_json fail.
pub fn encode<T: Serialize>(envelope: &T) -> Vec<u8> {
    serde_json::to_vec(envelope).unwrap_or_default()
}

/// What one change record carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ChangeBody {
    /// A full or partial customer record, merged per field.
    Customer(Box<CustomerRecord>),
    /// A full or partial package record, merged per field.
    Package(Box<PackageRecord>),
    /// A ledger entry, merged by union.
    Ledger(LedgerEntry),
    /// An audit event (including conflict-log events), merged by union.
    Audit(AuditEvent),
    /// A session report, merged by per-session maximum.
    Session(SessionRecord),
    /// A placeholder keeping sequence numbers contiguous after outbox compaction.
    Noop,
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Per-direction, per-router sequence number; contiguous.
    pub seq: u64,
    /// Unique id of this change (UUIDv7), for idempotency and tracing.
    pub id: Uuid,
    pub body: ChangeBody,
}

/// `down/changes` and `up/changes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeBatch {
    pub v: u32,
    pub router: Uuid,
    /// The replica epoch the sender believes in (the agent's; see DESIGN.md).
    pub epoch: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub changes: Vec<Change>,
}

/// `down/ack` and `up/ack`: cumulative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ack {
    pub v: u32,
    pub router: Uuid,
    pub epoch: String,
    /// Every change with `seq <= ackedThrough` is durably applied.
    pub acked_through: u64,
    /// Set when the receiver saw a gap: resend from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_from: Option<u64>,
    /// Changes that could not be applied (invalid), acked so they never block the stream.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rejected: Vec<Rejected>,
    /// The receiver cannot continue incrementally (unknown epoch, position past the horizon).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_resync: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rejected {
    pub seq: u64,
    pub reason: String,
}

/// `status`, retained. The agent publishes `online: true` on connect; its Last Will is the
/// same envelope with `online: false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub v: u32,
    pub router: Uuid,
    pub online: bool,
    /// Increments on every connection, so a late Will of an old connection can be ignored.
    pub session: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The last downstream seq the agent applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_through: Option<u64>,
}

/// The agent's view of its own clock, which decides whether it may cut customers off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClockState {
    Synchronised,
    /// The system clock is not NTP-synchronised: cut-offs are held.
    Unsynchronised,
    /// The clock went backwards past the last persisted time: cut-offs are held.
    JumpedBackwards,
}

/// A mass cut-off waiting for an operator's confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MassCutoffHold {
    pub customers: u64,
    pub of_total: u64,
    pub since: DateTime<Utc>,
}

/// `telemetry`: periodic health, QoS 0, latest value only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    pub v: u32,
    pub router: Uuid,
    pub at: DateTime<Utc>,
    pub router_reachable: bool,
    pub customers: u64,
    pub active_sessions: u64,
    pub outbox_depth: u64,
    pub last_reconcile: Option<DateTime<Utc>>,
    pub clock: ClockState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mass_cutoff_hold: Option<MassCutoffHold>,
}

/// `down/cmd`: a request with a correlation id and a deadline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub v: u32,
    pub id: Uuid,
    pub expires_at: DateTime<Utc>,
    pub command: CommandKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandKind {
    /// Drop the customer's live session now.
    #[serde(rename_all = "camelCase")]
    Disconnect { customer_id: Uuid },
    /// Read the customer's session from the router now.
    #[serde(rename_all = "camelCase")]
    LiveStatus { customer_id: Uuid },
    /// Ask for a snapshot (replica suspected damaged).
    Resync,
    /// Release a held mass cut-off.
    ConfirmMassCutoff,
}

/// `up/cmd-result`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandResult {
    pub v: u32,
    /// The command's id.
    pub id: Uuid,
    pub outcome: CommandOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CommandOutcome {
    Done,
    /// The customer's active session as the router reports it now, if any.
    LiveStatus(Option<Box<SessionRecord>>),
    Failed(String),
}

/// `up/resync`: the agent asks for a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResyncRequest {
    pub v: u32,
    pub router: Uuid,
    pub epoch: String,
    pub reason: String,
}

/// `down/snapshot`: one chunk of a full snapshot, consistent as of `highWaterSeq`. The agent
/// stages chunks and swaps them in atomically once all `count` have arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotChunk {
    pub v: u32,
    pub router: Uuid,
    pub snapshot_id: Uuid,
    pub epoch: String,
    pub index: u32,
    pub count: u32,
    pub high_water_seq: u64,
    pub items: Vec<ChangeBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_major_version_is_reported_as_such() {
        let payload =
            br#"{"v":2,"router":"00000000-0000-0000-0000-000000000001","something":"new"}"#;
        assert_eq!(
            decode::<Ack>(payload).unwrap_err(),
            EnvelopeError::Unsupported { found: 2 }
        );
        assert!(matches!(
            decode::<Ack>(b"not json").unwrap_err(),
            EnvelopeError::Malformed(_)
        ));
    }
}
