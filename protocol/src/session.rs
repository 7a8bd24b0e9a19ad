//! Router sessions (PPPoE, hotspot) turned from the router's counters into records.
//!
//! One writer (the router's agent); central keeps, per session, the maximum of each counter it
//! has seen, so replays and reordering can never inflate usage. `inputOctets` is what the
//! customer sent (upload), `outputOctets` what it received (download), as in RADIUS accounting.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum SessionKind {
    Pppoe,
    Hotspot,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub router_id: Uuid,
    pub customer_id: Option<Uuid>,
    pub username: String,
    pub kind: SessionKind,
    /// The router's own session id (`/ppp/active` `session-id`, hotspot `.id`).
    pub session_id: String,
    pub start_time: DateTime<Utc>,
    pub stop_time: Option<DateTime<Utc>>,
    pub input_octets: u64,
    pub output_octets: u64,
    pub framed_ip: Option<String>,
    pub mac_address: Option<String>,
    pub terminate_cause: Option<String>,
    pub updated_at: DateTime<Utc>,
}

impl SessionRecord {
    pub fn is_active(&self) -> bool {
        self.stop_time.is_none()
    }

    /// Merges another report of the same session: counters and times are per-field maxima
    /// (start is the minimum); descriptive fields come from the newer report. Commutative,
    /// associative and idempotent. Reports of different sessions are not merged.
    pub fn merge(&mut self, other: &SessionRecord) {
        if self.id != other.id {
            return;
        }
        fn newer<T: Ord + Clone>(a: &mut T, a_at: DateTime<Utc>, b: &T, b_at: DateTime<Utc>) {
            if (b_at, b) > (a_at, &*a) {
                *a = b.clone();
            }
        }
        let (a_at, b_at) = (self.updated_at, other.updated_at);
        newer(&mut self.customer_id, a_at, &other.customer_id, b_at);
        newer(&mut self.username, a_at, &other.username, b_at);
        newer(&mut self.kind, a_at, &other.kind, b_at);
        newer(&mut self.session_id, a_at, &other.session_id, b_at);
        newer(&mut self.framed_ip, a_at, &other.framed_ip, b_at);
        newer(&mut self.mac_address, a_at, &other.mac_address, b_at);
        newer(
            &mut self.terminate_cause,
            a_at,
            &other.terminate_cause,
            b_at,
        );
        newer(&mut self.router_id, a_at, &other.router_id, b_at);
        newer(&mut self.tenant_id, a_at, &other.tenant_id, b_at);
        self.start_time = self.start_time.min(other.start_time);
        self.stop_time = self.stop_time.max(other.stop_time);
        self.input_octets = self.input_octets.max(other.input_octets);
        self.output_octets = self.output_octets.max(other.output_octets);
        self.updated_at = self.updated_at.max(other.updated_at);
    }
}

/// One row of `GET /api/customers/:id/sessions` and the `session` of live status.
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub id: Uuid,
    pub session_id: String,
    pub start_time: DateTime<Utc>,
    pub stop_time: Option<DateTime<Utc>>,
    /// Human form of the session's length, e.g. `4h 30m`.
    pub duration: String,
    /// Seconds from start to stop (or to `now` for an active session).
    pub session_time: u64,
    pub input_octets: u64,
    pub output_octets: u64,
    /// Human form of input + output, e.g. `6.29 GB`.
    pub data_used: String,
    pub framed_ip: Option<String>,
    pub mac_address: Option<String>,
    pub terminate_cause: Option<String>,
}

impl SessionView {
    pub fn at(record: &SessionRecord, now: DateTime<Utc>) -> SessionView {
        let end = record.stop_time.unwrap_or(now);
        let seconds = (end - record.start_time).num_seconds().max(0) as u64;
        SessionView {
            id: record.id,
            session_id: record.session_id.clone(),
            start_time: record.start_time,
            stop_time: record.stop_time,
            duration: human_duration(seconds),
            session_time: seconds,
            input_octets: record.input_octets,
            output_octets: record.output_octets,
            data_used: human_bytes(record.input_octets.saturating_add(record.output_octets)),
            framed_ip: record.framed_ip.clone(),
            mac_address: record.mac_address.clone(),
            terminate_cause: record.terminate_cause.clone(),
        }
    }
}

/// `4h 30m`, `2d 3h`, `45s`.
pub fn human_duration(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .take(2)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0s".to_string()
    } else {
        parts.join(" ")
    }
}

/// Decimal units as the seed shows them: 6,291,456,000 bytes is `6.29 GB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scaled = bytes;
    while scaled >= 1_000_000 && unit + 1 < UNITS.len() {
        scaled /= 1000;
        unit += 1;
    }
    // `scaled` is now in [1_000, 1_000_000) of UNITS[unit] / 1000: print with two decimals.
    let hundredths = scaled / 10;
    format!(
        "{}.{:02} {}",
        hundredths / 100,
        hundredths % 100,
        UNITS[unit]
    )
}

/// `5 minutes ago`, as the seed's live status shows `lastSeen`.
pub fn human_ago(seconds: u64) -> String {
    let (n, unit) = match seconds {
        0..60 => return "just now".to_string(),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanises_like_the_seed() {
        assert_eq!(human_duration(4 * 3600 + 30 * 60), "4h 30m");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_bytes(1_048_576_000 + 5_242_880_000), "6.29 GB");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.50 KB");
        assert_eq!(human_ago(300), "5 minutes ago");
        assert_eq!(human_ago(3600), "1 hour ago");
    }
}
