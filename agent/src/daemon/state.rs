//! The agent's own persisted state (in the replica's `state` table): clock trust, how far
//! expiry was enforced, a held mass cut-off, the hybrid logical clock, the last reconcile.
//! `status` reads it; the daemon's tasks write it.

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

/// A boolean flag stored as JSON (`true`); absent is false.
pub fn get_state_flag(conn: &Connection, key: &str) -> Result<bool> {
    Ok(get_json::<bool>(conn, key)?.unwrap_or(false))
}
