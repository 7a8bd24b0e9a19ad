//! Turns polls of active sessions into session records.
//!
//! A session starts when first seen, updates while seen, and stops when gone. The router's
//! counters are cumulative per router session but not trustworthy across events:
//! - a reconnect creates a new router session (new id, counters from 0): a new record;
//! - `reset-counters` or a reboot zeroes counters of what looks like the same session: the
//!   new reading is counted from zero, never subtracted;
//! - RouterOS 6 keeps 32-bit interface counters that wrap at 4 GiB: a decrease from near the
//!   top is a wrap, and the total keeps growing.
//!
//! Totals are 64-bit and only grow, so central's per-session maximum stays correct.

use chrono::{DateTime, Utc};
use easyisp_protocol::session::{SessionKind, SessionRecord};
use std::collections::HashMap;
use uuid::Uuid;

/// One active session as read from the router in one poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub kind: SessionKind,
    /// The customer's username (PPP secret or hotspot user name).
    pub username: String,
    /// The router's id for this session (`/ppp/active` session id or `.id`).
    pub router_session: String,
    /// Seconds the router says the session has been up, when known.
    pub uptime_secs: Option<u64>,
    /// Bytes the customer sent (upload), as the router counts them now.
    pub bytes_in: u64,
    /// Bytes the customer received (download).
    pub bytes_out: u64,
    pub address: Option<String>,
    pub mac: Option<String>,
}

/// How wide the router's counters are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CounterWidth {
    Bits32,
    Bits64,
}

/// Context the tracker needs to fill records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteContext {
    pub tenant: Uuid,
    pub router: Uuid,
    pub width: CounterWidth,
}

#[derive(Debug, Clone)]
struct Tracked {
    record: SessionRecord,
    router_session: String,
    raw_in: u64,
    raw_out: u64,
    uptime_secs: Option<u64>,
}

/// The sessions the tracker believes are active, by (kind, username).
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    active: HashMap<(SessionKind, String), Tracked>,
}

/// Why the agent knows a session ended (RADIUS Acct-Terminate-Cause names).
pub const CAUSE_ADMIN_RESET: &str = "Admin-Reset";
pub const CAUSE_LOST_SERVICE: &str = "Lost-Service";
pub const CAUSE_SESSION_RESET: &str = "NAS-Request";

impl Tracker {
    /// Resumes from active sessions persisted before a restart.
    pub fn resume(records: impl IntoIterator<Item = (SessionRecord, String, u64, u64)>) -> Tracker {
        let active = records
            .into_iter()
            .filter(|(record, ..)| record.is_active())
            .map(|(record, router_session, raw_in, raw_out)| {
                let key = (record.kind, record.username.clone());
                (
                    key,
                    Tracked {
                        record,
                        router_session,
                        raw_in,
                        raw_out,
                        uptime_secs: None,
                    },
                )
            })
            .collect();
        Tracker { active }
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Whether [`observe`](Tracker::observe) would start a new record for `sample`, the only
    /// case in which it asks for the sample's customer.
    pub fn starts_record(&self, sample: &Sample) -> bool {
        !self
            .active
            .get(&(sample.kind, sample.username.clone()))
            .is_some_and(|t| continues(t, sample))
    }

    /// The raw router counters last seen for an active session (persisted with the record so
    /// a restart can resume without double counting).
    pub fn raw_counters(&self, kind: SessionKind, username: &str) -> Option<(String, u64, u64)> {
        self.active
            .get(&(kind, username.to_string()))
            .map(|t| (t.router_session.clone(), t.raw_in, t.raw_out))
    }

    /// Takes in one complete poll of the router's active sessions. Returns every record that
    /// started, changed or stopped. `ended_by_agent` names sessions the agent itself removed
    /// (cut-off), so their cause is `Admin-Reset`. `new_id` makes ids for new sessions.
    pub fn observe(
        &mut self,
        site: SiteContext,
        samples: &[Sample],
        now: DateTime<Utc>,
        ended_by_agent: &[(SessionKind, String)],
        customer_of: impl Fn(&str) -> Option<Uuid>,
        mut new_id: impl FnMut() -> Uuid,
    ) -> Vec<SessionRecord> {
        let mut changed = Vec::new();
        let mut seen = HashMap::new();
        for sample in samples {
            let key = (sample.kind, sample.username.clone());
            seen.insert(key.clone(), ());
            let same_session = self.active.get(&key).is_some_and(|t| continues(t, sample));
            if !same_session {
                if let Some(old) = self.active.remove(&key) {
                    changed.push(stop(old.record, now, CAUSE_SESSION_RESET));
                }
                let record = SessionRecord {
                    id: new_id(),
                    tenant_id: site.tenant,
                    router_id: site.router,
                    customer_id: customer_of(&sample.username),
                    username: sample.username.clone(),
                    kind: sample.kind,
                    session_id: sample.router_session.clone(),
                    start_time: start_time(now, sample.uptime_secs),
                    stop_time: None,
                    input_octets: sample.bytes_in,
                    output_octets: sample.bytes_out,
                    framed_ip: sample.address.clone(),
                    mac_address: sample.mac.clone(),
                    terminate_cause: None,
                    updated_at: now,
                };
                changed.push(record.clone());
                let tracked = Tracked {
                    record,
                    router_session: sample.router_session.clone(),
                    raw_in: sample.bytes_in,
                    raw_out: sample.bytes_out,
                    uptime_secs: sample.uptime_secs,
                };
                self.active.insert(key, tracked);
                continue;
            }
            // `same_session` is true only when the key is present.
            let Some(tracked) = self.active.get_mut(&key) else {
                continue;
            };
            let add_in = delta(tracked.raw_in, sample.bytes_in, site.width);
            let add_out = delta(tracked.raw_out, sample.bytes_out, site.width);
            tracked.raw_in = sample.bytes_in;
            tracked.raw_out = sample.bytes_out;
            tracked.uptime_secs = sample.uptime_secs;
            let record = &mut tracked.record;
            let moved = add_in > 0
                || add_out > 0
                || record.framed_ip != sample.address
                || record.mac_address != sample.mac;
            if moved {
                record.input_octets = record.input_octets.saturating_add(add_in);
                record.output_octets = record.output_octets.saturating_add(add_out);
                record.framed_ip = sample.address.clone();
                record.mac_address = sample.mac.clone();
                record.updated_at = now;
                changed.push(record.clone());
            }
        }
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|k| !seen.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(old) = self.active.remove(&key) {
                let cause = if ended_by_agent.contains(&key) {
                    CAUSE_ADMIN_RESET
                } else {
                    CAUSE_LOST_SERVICE
                };
                changed.push(stop(old.record, now, cause));
            }
        }
        changed
    }
}

/// Whether a sample continues the tracked router session: same router id and an uptime that
/// did not go backwards.
fn continues(tracked: &Tracked, sample: &Sample) -> bool {
    let uptime_ok = match (tracked.uptime_secs, sample.uptime_secs) {
        (Some(before), Some(now)) => now >= before,
        _ => true,
    };
    tracked.router_session == sample.router_session && uptime_ok
}

/// Bytes added since the last reading of one counter.
fn delta(before: u64, now: u64, width: CounterWidth) -> u64 {
    if now >= before {
        return now - before;
    }
    match width {
        // A 32-bit counter that went down wrapped past 2^32 (at most once between polls).
        CounterWidth::Bits32 if before <= u64::from(u32::MAX) => now + (1u64 << 32) - before,
        // A 64-bit counter never wraps in practice: it was reset; count from zero.
        _ => now,
    }
}

fn start_time(now: DateTime<Utc>, uptime_secs: Option<u64>) -> DateTime<Utc> {
    let uptime = uptime_secs.and_then(|s| i64::try_from(s).ok()).unwrap_or(0);
    now - chrono::Duration::seconds(uptime)
}

fn stop(mut record: SessionRecord, now: DateTime<Utc>, cause: &str) -> SessionRecord {
    record.stop_time = Some(now);
    record.terminate_cause = Some(cause.to_string());
    record.updated_at = now;
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + secs, 0)
            .single()
            .expect("in range")
    }

    const SITE: SiteContext = SiteContext {
        tenant: Uuid::from_u128(1),
        router: Uuid::from_u128(2),
        width: CounterWidth::Bits64,
    };

    fn sample(session: &str, uptime: u64, up: u64, down: u64) -> Sample {
        Sample {
            kind: SessionKind::Pppoe,
            username: "alice".into(),
            router_session: session.into(),
            uptime_secs: Some(uptime),
            bytes_in: up,
            bytes_out: down,
            address: Some("10.0.0.5".into()),
            mac: Some("00:11:22:33:44:55".into()),
        }
    }

    fn poll(
        tracker: &mut Tracker,
        site: SiteContext,
        samples: &[Sample],
        at: i64,
    ) -> Vec<SessionRecord> {
        tracker.observe(
            site,
            samples,
            t(at),
            &[],
            |_| Some(Uuid::from_u128(7)),
            Uuid::now_v7,
        )
    }

    #[test]
    fn a_session_starts_updates_and_stops() {
        let mut tracker = Tracker::default();
        let started = poll(&mut tracker, SITE, &[sample("*1", 60, 1000, 5000)], 0);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].start_time, t(-60));
        assert_eq!(
            (started[0].input_octets, started[0].output_octets),
            (1000, 5000)
        );

        let updated = poll(&mut tracker, SITE, &[sample("*1", 90, 1500, 9000)], 30);
        assert_eq!(
            (updated[0].input_octets, updated[0].output_octets),
            (1500, 9000)
        );
        assert!(
            poll(&mut tracker, SITE, &[sample("*1", 120, 1500, 9000)], 60).is_empty(),
            "no change, no write"
        );

        let stopped = poll(&mut tracker, SITE, &[], 90);
        assert_eq!(stopped[0].stop_time, Some(t(90)));
        assert_eq!(
            stopped[0].terminate_cause.as_deref(),
            Some(CAUSE_LOST_SERVICE)
        );
        assert_eq!(tracker.active_count(), 0);
    }

    #[test]
    fn a_reconnect_closes_the_old_session_and_starts_a_new_one() {
        let mut tracker = Tracker::default();
        poll(&mut tracker, SITE, &[sample("*1", 60, 1000, 5000)], 0);
        let out = poll(&mut tracker, SITE, &[sample("*2", 5, 10, 20)], 30);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].stop_time, Some(t(30)));
        assert_eq!(
            (out[0].input_octets, out[0].output_octets),
            (1000, 5000),
            "old totals kept"
        );
        assert_eq!(
            (out[1].input_octets, out[1].output_octets),
            (10, 20),
            "new counts from zero"
        );
        assert_ne!(out[0].id, out[1].id);
    }

    #[test]
    fn counters_reset_within_a_session_are_counted_from_zero() {
        let mut tracker = Tracker::default();
        poll(&mut tracker, SITE, &[sample("*1", 60, 1000, 5000)], 0);
        let out = poll(&mut tracker, SITE, &[sample("*1", 90, 300, 700)], 30);
        assert_eq!((out[0].input_octets, out[0].output_octets), (1300, 5700));
    }

    #[test]
    fn a_32_bit_wrap_keeps_the_total_growing() {
        let site = SiteContext {
            width: CounterWidth::Bits32,
            ..SITE
        };
        let mut tracker = Tracker::default();
        let near_top = u64::from(u32::MAX) - 99;
        poll(&mut tracker, site, &[sample("*1", 60, near_top, 0)], 0);
        let out = poll(&mut tracker, site, &[sample("*1", 90, 400, 0)], 30);
        assert_eq!(out[0].input_octets, near_top + 100 + 400);
    }

    #[test]
    fn a_session_the_agent_removed_ends_with_admin_reset() {
        let mut tracker = Tracker::default();
        poll(&mut tracker, SITE, &[sample("*1", 60, 1, 1)], 0);
        let out = tracker.observe(
            SITE,
            &[],
            t(10),
            &[(SessionKind::Pppoe, "alice".into())],
            |_| None,
            Uuid::now_v7,
        );
        assert_eq!(out[0].terminate_cause.as_deref(), Some(CAUSE_ADMIN_RESET));
    }

    #[test]
    fn totals_never_decrease_whatever_the_router_reports() {
        let mut tracker = Tracker::default();
        let mut last = (0, 0);
        let readings = [(100, 100), (50, 70), (50, 70), (4000, 10), (0, 0), (7, 9)];
        for (i, (up, down)) in readings.into_iter().enumerate() {
            for record in poll(
                &mut tracker,
                SITE,
                &[sample("*1", 10 + i as u64, up, down)],
                i as i64,
            ) {
                assert!(record.input_octets >= last.0 && record.output_octets >= last.1);
                last = (record.input_octets, record.output_octets);
            }
        }
    }
}
