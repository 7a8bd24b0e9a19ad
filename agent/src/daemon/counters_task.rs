//! The counters task: every poll interval, reads the router's active PPP and hotspot sessions,
//! turns them into session records (`counters::track`), and writes every change of the poll in
//! one transaction — records, the customer's `lastIp`/`lastMac`, and their outbox rows — so an
//! SD card sees one commit per poll, not one per session.

use super::{Shared, backoff, state};
use crate::counters::track::{CounterWidth, Sample, SiteContext, Tracker};
use crate::replica::store;
use crate::routeros::{HotspotSession, PppSession, Router, RouterError};
use chrono::{DateTime, Utc};
use easyisp_protocol::NodeId;
use easyisp_protocol::customer::CustomerRecord;
use easyisp_protocol::envelope::ChangeBody;
use easyisp_protocol::merge::Lww;
use easyisp_protocol::session::{SessionKind, SessionRecord};
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub async fn run(shared: Shared, cancel: CancellationToken) {
    let mut tracker = match shared.replica.read(store::active_sessions).await {
        Ok(active) => Tracker::resume(active),
        Err(e) => {
            tracing::error!(error = %e, "cannot read active sessions from the replica; starting empty");
            Tracker::default()
        }
    };
    let mut width = None;
    let mut failures = 0u32;
    let mut interval = tokio::time::interval(shared.config.poll_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = interval.tick() => {}
        }
        match poll_once(&shared, &mut tracker, &mut width).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "reading session counters failed");
                let wait = backoff(failures).min(shared.config.poll_interval);
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn poll_once(
    shared: &Shared,
    tracker: &mut Tracker,
    width: &mut Option<CounterWidth>,
) -> anyhow::Result<()> {
    let router = shared.router.get().await.inspect_err(|_| {
        shared.metrics.router_error();
    })?;
    let (samples, counter_width) = match read_samples(router.as_ref(), width).await {
        Ok(read) => read,
        Err(e) => {
            shared.metrics.router_error();
            shared.router.reset_if(&e).await;
            return Err(e.into());
        }
    };
    let now = Utc::now();
    let router = shared.config.router_id;
    // Customers are looked up for new sessions only: a poll of sessions already tracked reads
    // nothing from the replica.
    let mut wanted: Vec<String> = samples
        .iter()
        .filter(|s| tracker.starts_record(s))
        .map(|s| s.username.clone())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let usernames: HashMap<String, Uuid> = if wanted.is_empty() {
        HashMap::new()
    } else {
        shared
            .replica
            .read(move |conn| store::customer_ids_by_username(conn, router, &wanted))
            .await?
    };
    let kicked: Vec<(SessionKind, String)> = shared
        .kicked
        .lock()
        .map(|mut list| std::mem::take(&mut *list))
        .unwrap_or_default();
    let site = SiteContext {
        tenant: shared.config.tenant_id,
        router: shared.config.router_id,
        width: counter_width,
    };
    let changed = tracker.observe(
        site,
        &samples,
        now,
        &kicked,
        |name| usernames.get(name).copied(),
        Uuid::now_v7,
    );
    // The poll's listings and lookups are done with: free them before the write.
    drop(samples);
    drop(usernames);
    if changed.is_empty() {
        return Ok(());
    }
    // The router's session id and raw counters of each changed record, beside the records
    // (not a second vector of whole records: at 5,000 online that would be megabytes).
    let raw: Vec<(String, (u64, u64))> = changed
        .iter()
        .map(|record| {
            let (router_session, raw_in, raw_out) = tracker
                .raw_counters(record.kind, &record.username)
                .filter(|(session, ..)| *session == record.session_id)
                .unwrap_or((record.session_id.clone(), 0, 0));
            (router_session, (raw_in, raw_out))
        })
        .collect();
    let node = NodeId::from_uuid(shared.config.router_id);
    shared
        .replica
        .write(move |tx| persist(tx, &changed, &raw, node, now))
        .await?;
    shared.outbox_changed();
    Ok(())
}

fn persist(
    tx: &rusqlite::Transaction<'_>,
    records: &[SessionRecord],
    raw: &[(String, (u64, u64))],
    node: NodeId,
    now: DateTime<Utc>,
) -> crate::replica::Result<()> {
    for (record, (router_session, raw)) in records.iter().zip(raw) {
        store::upsert_session(tx, record, router_session, *raw)?;
        store::enqueue(tx, &ChangeBody::Session(record.clone()), now)?;
        if !record.is_active() {
            continue;
        }
        let Some(customer_id) = record.customer_id else {
            continue;
        };
        let Some(current) = store::load_customer(tx, customer_id)? else {
            continue;
        };
        let known = |f: &Option<Lww<Option<String>>>| f.as_ref().and_then(|l| l.value.clone());
        let ip_changed = record.framed_ip.is_some() && known(&current.last_ip) != record.framed_ip;
        let mac_changed =
            record.mac_address.is_some() && known(&current.last_mac) != record.mac_address;
        if !ip_changed && !mac_changed {
            continue;
        }
        let stamp = state::tick(tx, node, now)?;
        let mut change = CustomerRecord::empty(current.id, current.tenant_id);
        if ip_changed {
            change.last_ip = Some(Lww::new(record.framed_ip.clone(), stamp));
        }
        if mac_changed {
            change.last_mac = Some(Lww::new(record.mac_address.clone(), stamp));
        }
        store::merge_customer(tx, &change)?;
        store::enqueue(tx, &ChangeBody::Customer(Box::new(change)), now)?;
    }
    Ok(())
}

/// Reads both session menus; learns the counter width from the RouterOS version once.
async fn read_samples(
    router: &dyn Router,
    width: &mut Option<CounterWidth>,
) -> Result<(Vec<Sample>, CounterWidth), RouterError> {
    let counter_width = match *width {
        Some(w) => w,
        None => {
            let version = router.resources().await?.version;
            // RouterOS 6 keeps 32-bit interface counters; 7 uses 64-bit ones.
            let w = if version.starts_with('6') {
                CounterWidth::Bits32
            } else {
                CounterWidth::Bits64
            };
            *width = Some(w);
            w
        }
    };
    // One menu after the other, each turned into samples at once: a PPP session has to wait
    // for its interface's counters (a second listing), a hotspot session becomes its sample
    // as its row arrives, so at most one listing is ever held as typed sessions.
    let mut samples: Vec<Sample> = router
        .ppp_sessions()
        .await?
        .iter()
        .map(ppp_sample)
        .collect();
    router
        .each_hotspot_session(&mut |session| samples.push(hotspot_sample(&session)))
        .await?;
    samples.shrink_to_fit();
    Ok((samples, counter_width))
}

fn ppp_sample(s: &PppSession) -> Sample {
    Sample {
        kind: SessionKind::Pppoe,
        username: s.name.to_string_lossy(),
        router_session: s.session_id.clone().unwrap_or_else(|| s.id.to_string()),
        uptime_secs: s.uptime.map(|d| d.as_secs()),
        bytes_in: s.upload_bytes.unwrap_or(0),
        bytes_out: s.download_bytes.unwrap_or(0),
        address: s.address.clone(),
        mac: s.caller_id.clone(),
    }
}

fn hotspot_sample(s: &HotspotSession) -> Sample {
    Sample {
        kind: SessionKind::Hotspot,
        username: s.user.to_string_lossy(),
        router_session: s.id.to_string(),
        uptime_secs: s.uptime.map(|d| d.as_secs()),
        bytes_in: s.upload_bytes.unwrap_or(0),
        bytes_out: s.download_bytes.unwrap_or(0),
        address: s.address.clone(),
        mac: s.mac_address.clone(),
    }
}
