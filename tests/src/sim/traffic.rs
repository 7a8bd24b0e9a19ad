//! Subscriber traffic: moving (or setting) a live session's byte counters on its
//! `<pppoe-NAME>` interface, dynamic queue, hotspot active row and cumulative hotspot user,
//! with the 32-bit wrap of v6 interface counters and the hotspot `limit-bytes-total` logout.

use std::time::Instant;

use super::format::counter;
use super::sessions::{SessionError, SessionKind, hotspot_end, hotspot_qname, pppoe_ifname};
use super::state::{Bytes, State};

fn add_pair(v: Option<&Bytes>, up: u64, down: u64) -> Bytes {
    let s = v
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let (a, b) = s.split_once('/').unwrap_or(("0", "0"));
    let a: u64 = a.parse().unwrap_or(0);
    let b: u64 = b.parse().unwrap_or(0);
    format!("{}/{}", a.wrapping_add(up), b.wrapping_add(down)).into_bytes()
}

/// Moves a session's counters: `up` = customer upload, `down` = download. With `absolute`
/// the counters are set instead of incremented (e.g. near 2^32 to test wrap).
pub fn traffic(
    st: &mut State,
    kind: SessionKind,
    name: &[u8],
    up: u64,
    down: u64,
    absolute: bool,
    now: Instant,
) -> Result<(), SessionError> {
    let modulus = st.version.counter_modulus();
    let wrap = |v: u64| modulus.map_or(v, |m| v % m);
    let calc = |old: u64, delta: u64| {
        if absolute {
            delta
        } else {
            old.wrapping_add(delta)
        }
    };
    match kind {
        SessionKind::Ppp => {
            let ifname = pppoe_ifname(name);
            let t = st.table_mut("interface");
            let id = t.find_name(&ifname).ok_or(SessionError::NotActive)?;
            let row = t.get(id).ok_or(SessionError::NotActive)?;
            let rx = wrap(calc(counter(row.get("rx-byte")), up));
            let tx = wrap(calc(counter(row.get("tx-byte")), down));
            let rxp = wrap(calc(counter(row.get("rx-packet")), up.div_ceil(1000)));
            let txp = wrap(calc(counter(row.get("tx-packet")), down.div_ceil(1000)));
            t.set_fields(
                id,
                &[
                    ("rx-byte", rx.to_string().into_bytes()),
                    ("tx-byte", tx.to_string().into_bytes()),
                    ("rx-packet", rxp.to_string().into_bytes()),
                    ("tx-packet", txp.to_string().into_bytes()),
                ],
            );
            let q = st.table_mut("queue/simple");
            if let Some(qid) = q.find_name(&ifname) {
                let bytes = if absolute {
                    format!("{up}/{down}").into_bytes()
                } else {
                    add_pair(q.get(qid).and_then(|r| r.get("bytes")), up, down)
                };
                q.set_fields(qid, &[("bytes", bytes)]);
            }
        }
        SessionKind::Hotspot => {
            let ids = st.table("ip/hotspot/active").find_all("user", name);
            let id = *ids.first().ok_or(SessionError::NotActive)?;
            let t = st.table_mut("ip/hotspot/active");
            let row = t.get(id).ok_or(SessionError::NotActive)?;
            let old_in = counter(row.get("bytes-in"));
            let old_out = counter(row.get("bytes-out"));
            let bin = calc(old_in, up);
            let bout = calc(old_out, down);
            t.set_fields(
                id,
                &[
                    ("bytes-in", bin.to_string().into_bytes()),
                    ("bytes-out", bout.to_string().into_bytes()),
                    ("packets-in", bin.div_ceil(1000).to_string().into_bytes()),
                    ("packets-out", bout.div_ceil(1000).to_string().into_bytes()),
                ],
            );
            // User counters are cumulative across sessions (routeros.md §4.5); they move with
            // the session's deltas.
            let users = st.table_mut("ip/hotspot/user");
            let mut over_limit = false;
            if let Some(uid) = users.find_name(name)
                && let Some(u) = users.get(uid)
            {
                let uin = counter(u.get("bytes-in")).wrapping_add(bin.wrapping_sub(old_in));
                let uout = counter(u.get("bytes-out")).wrapping_add(bout.wrapping_sub(old_out));
                let total_limit = counter(u.get("limit-bytes-total"));
                over_limit = total_limit > 0 && uin.saturating_add(uout) >= total_limit;
                users.set_fields(
                    uid,
                    &[
                        ("bytes-in", uin.to_string().into_bytes()),
                        ("bytes-out", uout.to_string().into_bytes()),
                    ],
                );
            }
            let q = st.table_mut("queue/simple");
            if let Some(qid) = q.find_name(&hotspot_qname(name)) {
                let bytes = add_pair(q.get(qid).and_then(|r| r.get("bytes")), up, down);
                q.set_fields(qid, &[("bytes", bytes)]);
            }
            if over_limit {
                // The router logs the user out when the limit is reached (routeros.md §4.5).
                hotspot_end(st, id, false, now);
            }
        }
    }
    Ok(())
}
