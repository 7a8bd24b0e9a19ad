//! Read-only router state: identity, resources, clock, and the live PPP and hotspot sessions
//! with their byte counters.
//!
//! Directions follow routeros.md §5: for a PPPoE session the dynamic `<pppoe-NAME>` interface's
//! `rx-byte` is what the customer uploaded and `tx-byte` what it downloaded; for a hotspot
//! session `bytes-in` is upload and `bytes-out` download. Counters are per session and restart
//! from zero when the customer reconnects (§7.6): the poller detects that, not this module.

use std::collections::HashMap;
use std::time::Duration;

use chrono::NaiveDateTime;
use serde::Serialize;

use super::error::{Result, RouterError};
use super::value::{Id, Row, Text, parse_date, parse_time};

/// `/system/resource`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Resources {
    pub version: String,
    pub board_name: Option<String>,
    pub architecture_name: Option<String>,
    #[serde(skip)]
    pub uptime: Option<Duration>,
    pub cpu_load: Option<u64>,
    pub free_memory: Option<u64>,
    pub total_memory: Option<u64>,
}

pub(crate) const RESOURCE_PROPLIST: &[&str] = &[
    "version",
    "board-name",
    "architecture-name",
    "uptime",
    "cpu-load",
    "free-memory",
    "total-memory",
];

impl Resources {
    pub fn from_row(r: &Row) -> Result<Self> {
        Ok(Resources {
            version: r.string("version").unwrap_or_default(),
            board_name: r.string("board-name"),
            architecture_name: r.string("architecture-name"),
            uptime: r.duration("uptime")?,
            cpu_load: r.u64("cpu-load")?,
            free_memory: r.u64("free-memory")?,
            total_memory: r.u64("total-memory")?,
        })
    }

    /// `(major, minor)` of the RouterOS version, e.g. `7.18.2 (stable)` → `(7, 18)`.
    pub fn version_number(&self) -> Option<(u32, u32)> {
        let v = self.version.split_whitespace().next()?;
        let mut it = v.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it
            .next()
            .map(|m| {
                m.chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect::<String>()
            })
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        Some((major, minor))
    }
}

/// `/system/clock`: the router's local wall-clock time.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Clock {
    pub date_time: Option<NaiveDateTime>,
    pub time_zone: Option<String>,
}

pub(crate) const CLOCK_PROPLIST: &[&str] = &["date", "time", "time-zone-name"];

impl Clock {
    pub fn from_row(r: &Row) -> Result<Self> {
        let date = r.string("date").and_then(|d| parse_date(&d));
        let time = r.string("time").and_then(|t| parse_time(&t));
        Ok(Clock {
            date_time: date.zip(time).map(|(d, t)| d.and_time(t)),
            time_zone: r.string("time-zone-name"),
        })
    }
}

/// One connected PPP session (`/ppp/active`) joined with its `<pppoe-NAME>` interface.
#[derive(Debug, Clone, PartialEq)]
pub struct PppSession {
    pub id: Id,
    pub name: Text,
    pub service: Option<String>,
    pub caller_id: Option<String>,
    pub address: Option<String>,
    pub uptime: Option<Duration>,
    pub session_id: Option<String>,
    /// `.id` of the dynamic interface; a new one after every reconnect.
    pub interface_id: Option<Id>,
    /// Customer upload (interface `rx-byte`); `None` when the interface was not found.
    pub upload_bytes: Option<u64>,
    /// Customer download (interface `tx-byte`).
    pub download_bytes: Option<u64>,
}

pub(crate) const PPP_ACTIVE_MENU: &str = "/ppp/active";
pub(crate) const PPP_ACTIVE_PROPLIST: &[&str] = &[
    ".id",
    "name",
    "service",
    "caller-id",
    "address",
    "uptime",
    "session-id",
];
pub(crate) const INTERFACE_MENU: &str = "/interface";
pub(crate) const PPPOE_IF_PROPLIST: &[&str] = &[".id", "name", "rx-byte", "tx-byte"];

/// Joins `/ppp/active` rows with `/interface ?type=pppoe-in` rows by `<pppoe-NAME>`.
pub(crate) fn join_ppp_sessions(active: &[Row], interfaces: &[Row]) -> Result<Vec<PppSession>> {
    let mut join = PppJoin::default();
    for a in active {
        join.active(a);
    }
    for i in interfaces {
        join.interface(i);
    }
    join.finish()
}

/// [`join_ppp_sessions`] one row at a time, as the rows arrive: the active sessions first,
/// then the interfaces. Holds the typed sessions and an index by interface name, never rows.
#[derive(Debug, Default)]
pub(crate) struct PppJoin {
    sessions: Vec<PppSession>,
    /// `<pppoe-NAME>` → index in `sessions`.
    by_interface: HashMap<Vec<u8>, usize>,
    /// The first row that could not be read; the whole listing fails with it.
    failed: Option<RouterError>,
}

impl PppJoin {
    pub(crate) fn active(&mut self, a: &Row) {
        let session = (|| {
            Ok(PppSession {
                id: a.id()?,
                name: a.text("name"),
                service: a.string("service"),
                caller_id: a.string("caller-id"),
                address: a.string("address"),
                uptime: a.duration("uptime")?,
                session_id: a.string("session-id"),
                interface_id: None,
                upload_bytes: None,
                download_bytes: None,
            })
        })();
        match session {
            Ok(s) => {
                let mut if_name = b"<pppoe-".to_vec();
                if_name.extend_from_slice(s.name.as_bytes());
                if_name.push(b'>');
                self.by_interface.insert(if_name, self.sessions.len());
                self.sessions.push(s);
            }
            Err(e) => self.fail(e),
        }
    }

    pub(crate) fn interface(&mut self, i: &Row) {
        let Some(&at) = i
            .get("name")
            .and_then(|name| self.by_interface.get(name.as_bytes()))
        else {
            return;
        };
        let counters = (|| Ok((i.id()?, i.u64("rx-byte")?, i.u64("tx-byte")?)))();
        match counters {
            Ok((id, upload, download)) => {
                let s = &mut self.sessions[at];
                s.interface_id = Some(id);
                s.upload_bytes = upload;
                s.download_bytes = download;
            }
            Err(e) => self.fail(e),
        }
    }

    fn fail(&mut self, e: RouterError) {
        self.failed.get_or_insert(e);
    }

    pub(crate) fn finish(self) -> Result<Vec<PppSession>> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.sessions),
        }
    }
}

/// One logged-in hotspot client (`/ip/hotspot/active`).
#[derive(Debug, Clone, PartialEq)]
pub struct HotspotSession {
    pub id: Id,
    pub user: Text,
    pub server: Option<String>,
    pub address: Option<String>,
    pub mac_address: Option<String>,
    pub login_by: Option<String>,
    pub uptime: Option<Duration>,
    /// Customer upload (`bytes-in`) in this session.
    pub upload_bytes: Option<u64>,
    /// Customer download (`bytes-out`) in this session.
    pub download_bytes: Option<u64>,
}

pub(crate) const HOTSPOT_ACTIVE_MENU: &str = "/ip/hotspot/active";
pub(crate) const HOTSPOT_ACTIVE_PROPLIST: &[&str] = &[
    ".id",
    "user",
    "server",
    "address",
    "mac-address",
    "login-by",
    "uptime",
    "bytes-in",
    "bytes-out",
];

impl HotspotSession {
    pub fn from_row(r: &Row) -> Result<Self> {
        Ok(HotspotSession {
            id: r.id()?,
            user: r.text("user"),
            server: r.string("server"),
            address: r.string("address"),
            mac_address: r.string("mac-address"),
            login_by: r.string("login-by"),
            uptime: r.duration("uptime")?,
            upload_bytes: r.u64("bytes-in")?,
            download_bytes: r.u64("bytes-out")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pairs: &[(&str, &str)]) -> Row {
        let mut r = Row::default();
        for (k, v) in pairs {
            r.insert(*k, *v);
        }
        r
    }

    #[test]
    fn pppoe_rx_is_upload_and_tx_is_download() {
        let active = [row(&[
            (".id", "*8000001A"),
            ("name", "cust1"),
            ("uptime", "1h"),
        ])];
        let ifaces = [row(&[
            (".id", "*F1"),
            ("name", "<pppoe-cust1>"),
            ("rx-byte", "100"),
            ("tx-byte", "2000"),
        ])];
        let s = join_ppp_sessions(&active, &ifaces).unwrap();
        assert_eq!(s[0].upload_bytes, Some(100));
        assert_eq!(s[0].download_bytes, Some(2000));
        assert_eq!(s[0].interface_id, Some(Id::from("*F1")));
    }

    #[test]
    fn session_without_interface_has_no_counters() {
        let active = [row(&[(".id", "*1"), ("name", "cust2")])];
        let s = join_ppp_sessions(&active, &[]).unwrap();
        assert_eq!(s[0].upload_bytes, None);
    }

    #[test]
    fn hotspot_bytes_in_is_upload() {
        let s = HotspotSession::from_row(&row(&[
            (".id", "*3"),
            ("user", "u1"),
            ("bytes-in", "5"),
            ("bytes-out", "50"),
        ]))
        .unwrap();
        assert_eq!((s.upload_bytes, s.download_bytes), (Some(5), Some(50)));
    }

    #[test]
    fn version_numbers_and_clock_in_both_formats() {
        let r = Resources {
            version: "7.18.2 (stable)".into(),
            ..Default::default()
        };
        assert_eq!(r.version_number(), Some((7, 18)));
        let r = Resources {
            version: "6.49.10 (long-term)".into(),
            ..Default::default()
        };
        assert_eq!(r.version_number(), Some((6, 49)));
        let old = Clock::from_row(&row(&[("date", "jan/14/2023"), ("time", "19:13:29")])).unwrap();
        let new = Clock::from_row(&row(&[("date", "2023-01-14"), ("time", "19:13:29")])).unwrap();
        assert_eq!(old.date_time, new.date_time);
        assert!(old.date_time.is_some());
    }
}
