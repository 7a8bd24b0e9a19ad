//! The agent's own persisted state (in the replica's `state` table): clock trust, how far
//! expiry was enforced, a held mass cut-off, the hybrid logical clock, the last reconcile, and
//! the sync cursors and link state. `status` reads it; the daemon's tasks write it.

use crate::replica::Result;
use crate::replica::store::{get_state, set_state};
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::MassCutoffHold;
use easyisp_protocol::hlc::{DEFAULT_MAX_DRIFT_MS, HlcClock};
use easyisp_protocol::{Hlc, NodeId};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

pub const LAST_TRUSTED: &str = "last_trusted";
pub const LAST_ENFORCED: &str = "last_enforced";
pub const MASS_CUTOFF_CONFIRMED: &str = "mass_cutoff_confirmed";
pub const MASS_CUTOFF_HOLD: &str = "mass_cutoff_hold";
pub const LAST_RECONCILE: &str = "last_reconcile";
pub const ROUTER_REACHABLE: &str = "router_reachable";
pub const CLOCK: &str = "clock";
const HLC: &str = "hlc";
/// The last downstream seq applied (for the replica's epoch).
pub const SYNC_DOWN_APPLIED: &str = "sync_down_applied";
/// The last upstream seq central acknowledged; outbox rows up to it are deleted.
pub const SYNC_UP_ACKED: &str = "sync_up_acked";
/// Incremented for every broker connection; in the presence status and the Last Will.
pub const SYNC_SESSION: &str = "sync_session";
/// [`SyncLink`]: whether the daemon is connected to the broker, for `status`.
pub const SYNC_LINK: &str = "sync_link";
/// [`LastAck`]: central's last acknowledgement of upstream changes.
pub const SYNC_LAST_ACK: &str = "sync_last_ack";

pub fn get_time(conn: &Connection, key: &str) -> Result<Option<DateTime<Utc>>> {
    Ok(get_state(conn, key)?
        .and_then(|v| DateTime::parse_from_rfc3339(&v).ok())
        .map(|t| t.with_timezone(&Utc)))
}

pub fn set_time(conn: &Connection, key: &str, at: DateTime<Utc>) -> Result<()> {
    set_state(conn, key, &at.to_rfc3339())
}

/// Moves `last_trusted` forward (never back): called while the clock is synchronised.
pub fn trust_until(conn: &Connection, now: DateTime<Utc>) -> Result<()> {
    if get_time(conn, LAST_TRUSTED)?.is_none_or(|t| t < now) {
        set_time(conn, LAST_TRUSTED, now)?;
    }
    Ok(())
}

pub fn get_json<T: for<'de> Deserialize<'de>>(conn: &Connection, key: &str) -> Result<Option<T>> {
    Ok(get_state(conn, key)?.and_then(|v| serde_json::from_str(&v).ok()))
}

pub fn set_json<T: Serialize>(conn: &Connection, key: &str, value: &T) -> Result<()> {
    set_state(conn, key, &serde_json::to_string(value).unwrap_or_default())
}

pub fn clear(conn: &Connection, key: &str) -> Result<()> {
    conn.execute("DELETE FROM state WHERE key = ?1", [key])?;
    Ok(())
}

/// The last reconcile pass, as `status` and telemetry show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastReconcile {
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub applied: usize,
    pub failed: usize,
    pub blocked: usize,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The daemon's connection to central's broker as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncLink {
    pub broker: String,
    pub connected: bool,
    /// When it connected or lost the connection.
    pub since: DateTime<Utc>,
    pub session: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Central's last acknowledgement of the agent's upstream changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LastAck {
    pub at: DateTime<Utc>,
    pub through: u64,
}

pub fn get_u64(conn: &Connection, key: &str) -> Result<u64> {
    Ok(get_state(conn, key)?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

pub fn set_u64(conn: &Connection, key: &str, value: u64) -> Result<()> {
    set_state(conn, key, &value.to_string())
}

/// Whether a mass cut-off is currently held.
pub fn held(conn: &Connection) -> Result<Option<MassCutoffHold>> {
    get_json(conn, MASS_CUTOFF_HOLD)
}

/// A new HLC stamp for a local write, persisted in the same transaction.
pub fn tick(conn: &Connection, node: NodeId, now: DateTime<Utc>) -> Result<Hlc> {
    let high: Option<Hlc> = get_state(conn, HLC)?.and_then(|v| v.parse().ok());
    let mut clock = match high {
        Some(h) => HlcClock::restore(node, h, DEFAULT_MAX_DRIFT_MS),
        None => HlcClock::new(node, DEFAULT_MAX_DRIFT_MS),
    };
    let stamp = clock.tick(now.timestamp_millis().max(0) as u64);
    set_state(conn, HLC, &stamp.to_string())?;
    Ok(stamp)
}

/// Takes in a stamp written elsewhere (central), so later local stamps order after it. No
/// drift guard here: central's clock is the trusted one; the agent's may be the wrong one.
pub fn observe(conn: &Connection, node: NodeId, remote: Hlc, now: DateTime<Utc>) -> Result<()> {
    let high: Option<Hlc> = get_state(conn, HLC)?.and_then(|v| v.parse().ok());
    if high.is_some_and(|h| (h.wall_ms, h.counter) >= (remote.wall_ms, remote.counter)) {
        return Ok(());
    }
    let mut clock = match high {
        Some(h) => HlcClock::restore(node, h, DEFAULT_MAX_DRIFT_MS),
        None => HlcClock::new(node, DEFAULT_MAX_DRIFT_MS),
    };
    let wall = (now.timestamp_millis().max(0) as u64).max(remote.wall_ms);
    // `wall` is at least the remote stamp's time, so the drift guard cannot refuse it.
    let _ = clock.observe(remote, wall);
    set_state(conn, HLC, &clock.high_water().to_string())
}

/// A boolean flag stored as JSON (`true`); absent is false.
pub fn get_state_flag(conn: &Connection, key: &str) -> Result<bool> {
    Ok(get_json::<bool>(conn, key)?.unwrap_or(false))
}
