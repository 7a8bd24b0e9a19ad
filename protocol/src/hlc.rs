//! Hybrid logical clocks: (wall ms, counter, node id), totally ordered.
//!
//! Every replicated field carries the stamp of its last write; merge keeps the larger stamp.
//! The clock never goes backwards, even when the wall clock does (a Raspberry Pi without a
//! battery clock), and it refuses remote stamps too far in the future so one node with a wild
//! clock cannot poison every field it touches.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use thiserror::Error;
use uuid::Uuid;

/// Identifies the writer of a stamp. Central and each agent have their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NodeId(pub u64);

impl NodeId {
    /// A node id derived from a UUID (a router's id for its agent, a random one for central).
    pub fn from_uuid(id: Uuid) -> NodeId {
        let (high, low) = id.as_u64_pair();
        NodeId(high ^ low)
    }
}

/// One hybrid logical clock reading. Ordered by wall time, then counter, then node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hlc {
    pub wall_ms: u64,
    pub counter: u32,
    pub node: NodeId,
}

impl Hlc {
    pub const fn new(wall_ms: u64, counter: u32, node: NodeId) -> Hlc {
        Hlc {
            wall_ms,
            counter,
            node,
        }
    }
}

/// Text form `WALLMS-COUNTER-NODEHEX`, e.g. `1764093000123-0-9f2c4a1b00000000`: readable in
/// `mosquitto_sub` and parsed strictly.
impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{:016x}", self.wall_ms, self.counter, self.node.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HlcParseError {
    #[error("clock stamp {0:?} is not WALLMS-COUNTER-NODEHEX")]
    Malformed(String),
}

impl FromStr for Hlc {
    type Err = HlcParseError;

    fn from_str(s: &str) -> Result<Hlc, HlcParseError> {
        let bad = || HlcParseError::Malformed(s.chars().take(64).collect());
        // Byte scans rather than `split('-')`: every replicated field carries a stamp, and the
        // agent parses all of them for every customer on each reconcile pass.
        let dash = |from: usize| {
            s.as_bytes()[from..]
                .iter()
                .position(|b| *b == b'-')
                .map(|i| from + i)
        };
        let first = dash(0).ok_or_else(bad)?;
        let second = dash(first + 1).ok_or_else(bad)?;
        // Both cuts sit on an ASCII '-', so they are character boundaries.
        let (wall, counter, node) = (&s[..first], &s[first + 1..second], &s[second + 1..]);
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(wall)
            || !digits(counter)
            || node.len() != 16
            || !node.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(bad());
        }
        Ok(Hlc {
            wall_ms: wall.parse().map_err(|_| bad())?,
            counter: counter.parse().map_err(|_| bad())?,
            node: NodeId(u64::from_str_radix(node, 16).map_err(|_| bad())?),
        })
    }
}

impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Hlc, D::Error> {
        // A visitor borrows the text from the input instead of allocating a `String` per
        // stamp (a customer record carries about two dozen).
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Hlc;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a clock stamp WALLMS-COUNTER-NODEHEX")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Hlc, E> {
                text.parse().map_err(E::custom)
            }
        }
        de.deserialize_str(Text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ClockError {
    #[error(
        "remote clock stamp {remote} is {ahead_ms} ms ahead of local time (limit {limit_ms} ms)"
    )]
    TooFarAhead {
        remote: Hlc,
        ahead_ms: u64,
        limit_ms: u64,
    },
}

/// The default limit on how far a remote stamp may be ahead of our wall clock: 5 minutes.
pub const DEFAULT_MAX_DRIFT_MS: u64 = 5 * 60 * 1000;

/// A node's clock. Pure: the caller passes the wall time on every call and persists
/// [`HlcClock::high_water`] with each commit so a restart never reuses a stamp.
#[derive(Debug, Clone)]
pub struct HlcClock {
    last: Hlc,
    max_drift_ms: u64,
}

impl HlcClock {
    pub fn new(node: NodeId, max_drift_ms: u64) -> HlcClock {
        HlcClock {
            last: Hlc::new(0, 0, node),
            max_drift_ms,
        }
    }

    /// Restores a clock from the high-water stamp persisted before a restart.
    pub fn restore(node: NodeId, high_water: Hlc, max_drift_ms: u64) -> HlcClock {
        HlcClock {
            last: Hlc::new(high_water.wall_ms, high_water.counter, node),
            max_drift_ms,
        }
    }

    pub fn node(&self) -> NodeId {
        self.last.node
    }

    /// The largest stamp issued or observed; persist it.
    pub fn high_water(&self) -> Hlc {
        self.last
    }

    /// A new stamp for a local write, strictly greater than every earlier one.
    pub fn tick(&mut self, wall_ms: u64) -> Hlc {
        if wall_ms > self.last.wall_ms {
            self.last.wall_ms = wall_ms;
            self.last.counter = 0;
        } else {
            self.bump();
        }
        self.last
    }

    /// Takes in a remote stamp so later local stamps order after it. Refuses stamps further
    /// ahead of `wall_ms` than the drift limit; the caller rejects that change and alerts.
    pub fn observe(&mut self, remote: Hlc, wall_ms: u64) -> Result<(), ClockError> {
        let ahead_ms = remote.wall_ms.saturating_sub(wall_ms);
        if ahead_ms > self.max_drift_ms {
            return Err(ClockError::TooFarAhead {
                remote,
                ahead_ms,
                limit_ms: self.max_drift_ms,
            });
        }
        let node = self.last.node;
        let newest = wall_ms.max(self.last.wall_ms).max(remote.wall_ms);
        let counter = match (newest == self.last.wall_ms, newest == remote.wall_ms) {
            (true, true) => self.last.counter.max(remote.counter),
            (true, false) => self.last.counter,
            (false, true) => remote.counter,
            (false, false) => 0,
        };
        self.last = Hlc::new(newest, counter, node);
        Ok(())
    }

    fn bump(&mut self) {
        match self.last.counter.checked_add(1) {
            Some(c) => self.last.counter = c,
            // 4 billion writes inside one millisecond cannot happen; moving to the next
            // millisecond keeps the clock monotonic even if it did.
            None => {
                self.last.wall_ms += 1;
                self.last.counter = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(1);

    #[test]
    fn ticks_are_strictly_increasing_even_when_the_wall_clock_goes_back() {
        let mut clock = HlcClock::new(A, DEFAULT_MAX_DRIFT_MS);
        let first = clock.tick(1_000);
        let second = clock.tick(1_000);
        let third = clock.tick(500);
        let fourth = clock.tick(2_000);
        assert!(first < second && second < third && third < fourth);
        assert_eq!(third.wall_ms, 1_000);
    }

    #[test]
    fn observing_a_remote_stamp_orders_later_local_writes_after_it() {
        let mut clock = HlcClock::new(A, DEFAULT_MAX_DRIFT_MS);
        let remote = Hlc::new(10_000, 7, NodeId(2));
        clock.observe(remote, 9_000).unwrap();
        assert!(clock.tick(9_000) > remote);
    }

    #[test]
    fn a_remote_clock_too_far_ahead_is_refused() {
        let mut clock = HlcClock::new(A, 60_000);
        let remote = Hlc::new(1_000_000, 0, NodeId(2));
        let err = clock.observe(remote, 1_000).unwrap_err();
        assert!(matches!(
            err,
            ClockError::TooFarAhead {
                ahead_ms: 999_000,
                ..
            }
        ));
        assert_eq!(
            clock.high_water().wall_ms,
            0,
            "a refused stamp must not move the clock"
        );
    }

    #[test]
    fn restore_continues_after_the_persisted_high_water() {
        let high = Hlc::new(5_000, 3, A);
        let mut clock = HlcClock::restore(A, high, DEFAULT_MAX_DRIFT_MS);
        assert!(clock.tick(100) > high);
    }

    #[test]
    fn text_form_round_trips_and_is_strict() {
        let h = Hlc::new(1764093000123, 4, NodeId(0x9f2c4a1b00000000));
        assert_eq!(h.to_string(), "1764093000123-4-9f2c4a1b00000000");
        assert_eq!(h.to_string().parse::<Hlc>().unwrap(), h);
        for bad in [
            "",
            "1-2",
            "1-2-3",
            "a-0-0000000000000000",
            "1-0-000000000000000g",
            "1-0-0000000000000000-1",
            "1-0-+000000000000000",
            "-1-0-0000000000000000",
            "1--0000000000000000",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, "\"1764093000123-4-9f2c4a1b00000000\"");
        assert_eq!(serde_json::from_str::<Hlc>(&json).unwrap(), h);
        assert_eq!(
            serde_json::from_value::<Hlc>(serde_json::Value::String(h.to_string())).unwrap(),
            h
        );
        assert!(serde_json::from_str::<Hlc>("17").is_err());
    }
}
