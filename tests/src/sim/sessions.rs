//! Subscribers and their sessions: PPPoE sessions with their dynamic `<pppoe-NAME>`
//! interface and queue, hotspot logins with MAC cookies, byte counters, disconnect bookkeeping
//! on the secret, reboot, and the CPE's automatic redial after an admin disconnect
//! (routeros.md §4.3–4.7, §7.3–7.7, §7.19). Redial timing is explicit so tests stay
//! deterministic: a configured delay, or manual (`redial_now`) when the delay is `None`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use chrono::Utc;

use super::format::{counter, format_datetime, parse_duration_ms};
use super::ratelimit::{parse_rate_limit, queue_max_limit};
use super::state::{Bytes, State, defaults, format_id};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    Ppp,
    Hotspot,
}

type SubKey = (SessionKind, Bytes);

#[derive(Debug, Clone)]
struct Subscriber {
    mac: String,
    address: Option<String>,
}

#[derive(Debug)]
pub struct Sessions {
    /// `None` = redial only when `redial_now` is called.
    pub redial_delay: Option<Duration>,
    subscribers: HashMap<SubKey, Subscriber>,
    scheduled: BTreeMap<(Instant, u64), SubKey>,
    manual: Vec<SubKey>,
    seq: u64,
    next_session: u32,
    next_address: u32,
    /// Address-list entries with a `timeout`, by expiry.
    expiries: BTreeMap<(Instant, u32), ()>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionError {
    #[error("no such secret or user")]
    NoAccount,
    #[error("account is disabled")]
    Disabled,
    #[error("a session with this name is already active")]
    AlreadyActive,
    #[error("no such active session")]
    NotActive,
}

/// Ids of the rows a new session created.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub active_id: String,
    pub interface_id: Option<String>,
    pub queue_id: Option<String>,
    pub session_id: Option<String>,
    pub address: String,
}

impl Sessions {
    pub fn new(redial_delay: Option<Duration>) -> Self {
        Sessions {
            redial_delay,
            subscribers: HashMap::new(),
            scheduled: BTreeMap::new(),
            manual: Vec::new(),
            seq: 0,
            next_session: 1,
            next_address: 2,
            expiries: BTreeMap::new(),
        }
    }

    fn schedule(&mut self, key: SubKey, now: Instant) {
        match self.redial_delay {
            Some(d) => {
                self.seq += 1;
                self.scheduled.insert((now + d, self.seq), key);
            }
            None => self.manual.push(key),
        }
    }

    fn unschedule(&mut self, key: &SubKey) {
        self.scheduled.retain(|_, k| k != key);
        self.manual.retain(|k| k != key);
    }

    /// Subscribers waiting to redial.
    pub fn pending(&self) -> usize {
        self.scheduled.len() + self.manual.len()
    }
}

pub(super) fn pppoe_ifname(name: &[u8]) -> Bytes {
    [b"<pppoe-".as_slice(), name, b">"].concat()
}
pub(super) fn hotspot_qname(name: &[u8]) -> Bytes {
    [b"<hotspot-".as_slice(), name, b">"].concat()
}

fn props(pairs: &[(&str, Bytes)]) -> BTreeMap<String, Bytes> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn rate_limit_of_profile(st: &State, menu: &str, profile: &[u8]) -> Option<String> {
    let t = st.table(menu);
    let row = t.find_name(profile).and_then(|id| t.get(id))?;
    let rl = row.get_str("rate-limit");
    parse_rate_limit(&rl)
        .ok()
        .flatten()
        .map(|r| queue_max_limit(&r))
}

fn add_queue(st: &mut State, name: &Bytes, max_limit: String) -> Option<u32> {
    let menu = st.table("queue/simple").menu;
    let mut p = defaults(menu);
    p.insert("name".into(), name.clone());
    p.insert("target".into(), name.clone());
    p.insert("max-limit".into(), max_limit.into_bytes());
    p.insert("dynamic".into(), b"true".to_vec());
    let t = st.table_mut("queue/simple");
    if let Some(old) = t.find_name(name) {
        t.remove(old);
    }
    t.insert(p, None).ok()
}

/// The profile's `address-list` (if any): the session address is put on it while connected.
fn profile_address_list(st: &State, menu: &str, profile: &[u8]) -> Option<Bytes> {
    let t = st.table(menu);
    let row = t.find_name(profile).and_then(|id| t.get(id))?;
    row.get("address-list").filter(|l| !l.is_empty()).cloned()
}

fn add_session_address(st: &mut State, list: Option<Bytes>, address: &str, owner: &[u8]) {
    let Some(list) = list else { return };
    let menu = st.table("ip/firewall/address-list").menu;
    let mut p = defaults(menu);
    p.insert("list".into(), list);
    p.insert("address".into(), address.as_bytes().to_vec());
    p.insert("dynamic".into(), b"true".to_vec());
    p.insert("~session".into(), owner.to_vec());
    let _ = st.table_mut("ip/firewall/address-list").insert(p, None);
}

fn remove_session_address(st: &mut State, owner: &[u8]) {
    let t = st.table_mut("ip/firewall/address-list");
    for id in t.find_all("~session", owner) {
        t.remove(id);
    }
}

fn remove_named(st: &mut State, menu: &str, name: &[u8]) {
    let t = st.table_mut(menu);
    if let Some(id) = t.find_name(name) {
        t.remove(id);
    }
}

/// A PPPoE client dials in with the secret `name`.
pub fn ppp_connect(
    st: &mut State,
    name: &[u8],
    caller_id: &str,
    address: Option<&str>,
    now: Instant,
) -> Result<SessionInfo, SessionError> {
    let secrets = st.table("ppp/secret");
    let secret = secrets
        .find_name(name)
        .and_then(|id| secrets.get(id))
        .ok_or(SessionError::NoAccount)?;
    if secret.is_true("disabled") {
        return Err(SessionError::Disabled);
    }
    // The session's `<pppoe-NAME>` interface exists exactly while it is up, and interface
    // names are indexed: O(1) instead of a scan over every active session.
    if st
        .table("interface")
        .find_name(&pppoe_ifname(name))
        .is_some()
    {
        return Err(SessionError::AlreadyActive);
    }
    let profile = secret.get("profile").cloned().unwrap_or_default();
    let limit_in = secret
        .get("limit-bytes-in")
        .cloned()
        .unwrap_or(b"0".to_vec());
    let limit_out = secret
        .get("limit-bytes-out")
        .cloned()
        .unwrap_or(b"0".to_vec());
    let static_addr = secret.get_str("remote-address");
    let address = match address {
        Some(a) => a.to_owned(),
        None if !static_addr.is_empty() => static_addr,
        None => {
            let n = st.sessions.next_address;
            st.sessions.next_address += 1;
            format!("100.64.{}.{}", n / 250, n % 250 + 2)
        }
    };
    let n = st.sessions.next_session;
    st.sessions.next_session += 1;
    let session_id = format!("0x{:08X}", 0x8100_0000u32.wrapping_add(n));
    let active_id = st
        .table_mut("ppp/active")
        .insert(
            props(&[
                ("name", name.to_vec()),
                ("service", b"pppoe".to_vec()),
                ("caller-id", caller_id.as_bytes().to_vec()),
                ("address", address.as_bytes().to_vec()),
                ("uptime", b"0s".to_vec()),
                ("encoding", Vec::new()),
                ("session-id", session_id.clone().into_bytes()),
                ("limit-bytes-in", limit_in),
                ("limit-bytes-out", limit_out),
                ("radius", b"false".to_vec()),
            ]),
            Some(now),
        )
        .ok();
    let ifname = pppoe_ifname(name);
    remove_named(st, "interface", &ifname);
    let iface_menu = st.table("interface").menu;
    let mut ip = defaults(iface_menu);
    let iso = st.version.iso_dates();
    ip.extend(props(&[
        ("name", ifname.clone()),
        ("type", b"pppoe-in".to_vec()),
        ("mtu", b"1480".to_vec()),
        ("actual-mtu", b"1480".to_vec()),
        ("dynamic", b"true".to_vec()),
        (
            "last-link-up-time",
            format_datetime(Utc::now(), iso).into_bytes(),
        ),
    ]));
    ip.remove("default-name");
    ip.remove("mac-address");
    let interface_id = st.table_mut("interface").insert(ip, Some(now)).ok();
    let queue_id = rate_limit_of_profile(st, "ppp/profile", &profile)
        .and_then(|ml| add_queue(st, &ifname, ml));
    let list = profile_address_list(st, "ppp/profile", &profile);
    add_session_address(st, list, &address, &ifname);
    let key = (SessionKind::Ppp, name.to_vec());
    st.sessions.unschedule(&key);
    st.sessions.subscribers.insert(
        key,
        Subscriber {
            mac: caller_id.to_owned(),
            address: Some(address.clone()),
        },
    );
    Ok(SessionInfo {
        active_id: active_id.map(format_id).unwrap_or_default(),
        interface_id: interface_id.map(format_id),
        queue_id: queue_id.map(format_id),
        session_id: Some(session_id),
        address,
    })
}

/// Ends a PPP session row; `redial` schedules the CPE to dial again.
fn ppp_end(st: &mut State, active_id: u32, reason: &str, redial: bool, now: Instant) {
    let Some(row) = st.table_mut("ppp/active").remove(active_id) else {
        return;
    };
    let name = row.get("name").cloned().unwrap_or_default();
    let ifname = pppoe_ifname(&name);
    remove_named(st, "interface", &ifname);
    remove_named(st, "queue/simple", &ifname);
    remove_session_address(st, &ifname);
    let iso = st.version.iso_dates();
    let secrets = st.table_mut("ppp/secret");
    if let Some(sid) = secrets.find_name(&name) {
        secrets.set_fields(
            sid,
            &[
                (
                    "last-logged-out",
                    format_datetime(Utc::now(), iso).into_bytes(),
                ),
                (
                    "last-caller-id",
                    row.get("caller-id").cloned().unwrap_or_default(),
                ),
                ("last-disconnect-reason", reason.as_bytes().to_vec()),
            ],
        );
    }
    let key = (SessionKind::Ppp, name);
    if redial && st.sessions.subscribers.contains_key(&key) {
        st.sessions.schedule(key, now);
    } else {
        st.sessions.subscribers.remove(&key);
    }
}

/// A hotspot client logs in as `user`.
pub fn hotspot_login(
    st: &mut State,
    user: &[u8],
    mac: &str,
    address: Option<&str>,
    by_cookie: bool,
    now: Instant,
) -> Result<SessionInfo, SessionError> {
    let users = st.table("ip/hotspot/user");
    let row = users
        .find_name(user)
        .and_then(|id| users.get(id))
        .ok_or(SessionError::NoAccount)?;
    if row.is_true("disabled") {
        return Err(SessionError::Disabled);
    }
    if !st
        .table("ip/hotspot/active")
        .find_all("user", user)
        .is_empty()
    {
        return Err(SessionError::AlreadyActive);
    }
    let profile = row.get("profile").cloned().unwrap_or_default();
    let limit_uptime = parse_duration_ms(&row.get_str("limit-uptime")).unwrap_or(0);
    let mut limits = Vec::new();
    for k in ["limit-bytes-in", "limit-bytes-out", "limit-bytes-total"] {
        if counter(row.get(k)) > 0 {
            limits.push((k, row.get(k).cloned().unwrap_or_default()));
        }
    }
    let address = match address {
        Some(a) => a.to_owned(),
        None => {
            let n = st.sessions.next_address;
            st.sessions.next_address += 1;
            format!("10.5.{}.{}", n / 250, n % 250 + 2)
        }
    };
    let mut p = defaults(st.table("ip/hotspot/active").menu);
    p.extend(props(&[
        ("user", user.to_vec()),
        ("address", address.as_bytes().to_vec()),
        ("mac-address", mac.as_bytes().to_vec()),
        (
            "login-by",
            if by_cookie {
                b"cookie".to_vec()
            } else {
                b"http-chap".to_vec()
            },
        ),
    ]));
    for (k, v) in limits {
        p.insert(k.to_owned(), v);
    }
    if limit_uptime > 0 {
        p.insert(
            "~limit-uptime-ms".into(),
            limit_uptime.to_string().into_bytes(),
        );
    }
    let active_id = st.table_mut("ip/hotspot/active").insert(p, Some(now)).ok();
    let profiles = st.table("ip/hotspot/user/profile");
    let cookie_wanted = profiles
        .find_name(&profile)
        .and_then(|id| profiles.get(id))
        .is_some_and(|p| p.is_true("add-mac-cookie"));
    let has_cookie = cookie_exists(st, user, mac);
    if cookie_wanted && !has_cookie {
        let cm = st.table("ip/hotspot/cookie").menu;
        let mut cp = defaults(cm);
        cp.insert("user".into(), user.to_vec());
        cp.insert("mac-address".into(), mac.as_bytes().to_vec());
        let _ = st.table_mut("ip/hotspot/cookie").insert(cp, None);
    }
    let qname = hotspot_qname(user);
    let queue_id = rate_limit_of_profile(st, "ip/hotspot/user/profile", &profile)
        .and_then(|ml| add_queue(st, &qname, ml));
    let list = profile_address_list(st, "ip/hotspot/user/profile", &profile);
    add_session_address(st, list, &address, &qname);
    let key = (SessionKind::Hotspot, user.to_vec());
    st.sessions.unschedule(&key);
    st.sessions.subscribers.insert(
        key,
        Subscriber {
            mac: mac.to_owned(),
            address: Some(address.clone()),
        },
    );
    Ok(SessionInfo {
        active_id: active_id.map(format_id).unwrap_or_default(),
        interface_id: None,
        queue_id: queue_id.map(format_id),
        session_id: None,
        address,
    })
}

fn cookie_exists(st: &State, user: &[u8], mac: &str) -> bool {
    st.table("ip/hotspot/cookie")
        .rows()
        .any(|r| r.get("user").is_some_and(|u| u == user) && r.get_str("mac-address") == mac)
}

pub(super) fn hotspot_end(st: &mut State, active_id: u32, redial: bool, now: Instant) {
    let Some(row) = st.table_mut("ip/hotspot/active").remove(active_id) else {
        return;
    };
    let user = row.get("user").cloned().unwrap_or_default();
    remove_named(st, "queue/simple", &hotspot_qname(&user));
    remove_session_address(st, &hotspot_qname(&user));
    // The user's `uptime` accumulates over sessions, like its byte counters.
    let session_ms = row
        .since
        .map(|s| now.saturating_duration_since(s).as_millis() as u64)
        .unwrap_or(0);
    let users = st.table_mut("ip/hotspot/user");
    if let Some(uid) = users.find_name(&user) {
        let before = users
            .get(uid)
            .and_then(|u| parse_duration_ms(&u.get_str("uptime")))
            .unwrap_or(0);
        let total = super::format::format_duration_ms((before + session_ms) / 1000 * 1000);
        users.set_fields(uid, &[("uptime", total.into_bytes())]);
    }
    let key = (SessionKind::Hotspot, user);
    if redial && st.sessions.subscribers.contains_key(&key) {
        st.sessions.schedule(key, now);
    } else {
        st.sessions.subscribers.remove(&key);
    }
}

/// `remove` on a session menu from REST/API/CLI: the router drops the session; the CPE
/// will try again (routeros.md §7.4).
pub fn remove_by_admin(st: &mut State, path: &str, id: u32, now: Instant) {
    match path {
        "ppp/active" => ppp_end(st, id, "nas-request", true, now),
        "ip/hotspot/active" => hotspot_end(st, id, true, now),
        other => {
            st.table_mut(other).remove(id);
        }
    }
}

/// The subscriber hangs up for good (control interface): no redial.
pub fn hang_up(
    st: &mut State,
    kind: SessionKind,
    name: &[u8],
    now: Instant,
) -> Result<(), SessionError> {
    let (menu, field) = match kind {
        SessionKind::Ppp => ("ppp/active", "name"),
        SessionKind::Hotspot => ("ip/hotspot/active", "user"),
    };
    let ids = st.table(menu).find_all(field, name);
    let key = (kind, name.to_vec());
    st.sessions.unschedule(&key);
    st.sessions.subscribers.remove(&key);
    if ids.is_empty() {
        return Err(SessionError::NotActive);
    }
    for id in ids {
        match kind {
            SessionKind::Ppp => ppp_end(st, id, "peer-request", false, now),
            SessionKind::Hotspot => hotspot_end(st, id, false, now),
        }
    }
    Ok(())
}

/// Drops every session with reason `reboot`; every subscriber will redial.
pub fn drop_all_for_reboot(st: &mut State, now: Instant) {
    // Timed (dynamic) address-list entries do not survive a reboot; `reboot` removes them.
    st.sessions.expiries.clear();
    for id in st.table("ppp/active").ids() {
        ppp_end(st, id, "reboot", true, now);
    }
    for id in st.table("ip/hotspot/active").ids() {
        hotspot_end(st, id, true, now);
    }
}

/// Runs redials that are due.
/// Schedules the removal of address-list entry `id`.
pub fn expire_address_at(st: &mut State, id: u32, at: Instant) {
    st.sessions.expiries.insert((at, id), ());
}

pub fn tick(st: &mut State, now: Instant) {
    while let Some((&(at, id), _)) = st.sessions.expiries.iter().next() {
        if at > now {
            break;
        }
        st.sessions.expiries.remove(&(at, id));
        // Ids are never reused, so a stale entry finds nothing to remove.
        st.table_mut("ip/firewall/address-list").remove(id);
    }
    while let Some((&(at, seq), _)) = st.sessions.scheduled.iter().next() {
        if at > now {
            break;
        }
        if let Some(key) = st.sessions.scheduled.remove(&(at, seq)) {
            redial(st, key, now);
        }
    }
}

/// Runs every pending redial now, whatever its schedule.
pub fn redial_now(st: &mut State, now: Instant) -> usize {
    let mut keys: Vec<SubKey> = std::mem::take(&mut st.sessions.scheduled)
        .into_values()
        .collect();
    keys.append(&mut st.sessions.manual);
    let n = keys.len();
    for key in keys {
        redial(st, key, now);
    }
    n
}

fn redial(st: &mut State, key: SubKey, now: Instant) {
    let Some(sub) = st.sessions.subscribers.get(&key).cloned() else {
        return;
    };
    match key.0 {
        SessionKind::Ppp => {
            match ppp_connect(st, &key.1, &sub.mac, sub.address.as_deref(), now) {
                Ok(_) | Err(SessionError::AlreadyActive) => {}
                // The CPE keeps trying, as real ones do, until the secret works again.
                Err(_) => st.sessions.schedule(key, now),
            }
        }
        SessionKind::Hotspot => {
            // Only a MAC cookie logs a hotspot client back in without a person typing.
            if cookie_exists(st, &key.1, &sub.mac) {
                if hotspot_login(st, &key.1, &sub.mac, sub.address.as_deref(), true, now).is_err() {
                    st.sessions.subscribers.remove(&key);
                }
            } else {
                st.sessions.subscribers.remove(&key);
            }
        }
    }
}
