//! `easyisp-agent status`: what the agent knows, read from its replica and a quick look at the
//! router. Changes nothing.

use crate::config::Config;
use crate::daemon::state::{self, LastAck, LastReconcile, SyncLink};
use crate::replica::{Replica, staging, store};
use chrono::{DateTime, Utc};
use easyisp_protocol::envelope::{ClockState, MassCutoffHold};
use easyisp_protocol::{CustomerStatus, status_at};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Whether an `easyisp-agent run` holds this data directory's lock; `None` when that
    /// cannot be told. When it is not running, the sync and reconcile lines are history.
    pub daemon_running: Option<bool>,
    pub router_id: String,
    pub router_url: String,
    pub router_reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub router_error: Option<String>,
    pub customers: u64,
    pub customers_by_status: BTreeMap<String, u64>,
    pub active_sessions: u64,
    pub pending_changes: u64,
    pub clock: Option<ClockState>,
    pub mass_cutoff_hold: Option<MassCutoffHold>,
    pub last_reconcile: Option<LastReconcile>,
    pub last_trusted_time: Option<DateTime<Utc>>,
    /// `None` when the config has no `[central]` section (standalone).
    pub sync: Option<SyncReport>,
    pub replica: String,
}

/// Sync with central as the daemon last recorded it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncReport {
    pub central: String,
    pub broker: String,
    /// The daemon's last recorded broker connection (absent before its first attempt).
    pub link: Option<SyncLink>,
    pub epoch: Option<String>,
    /// The last change from central applied to the replica.
    pub applied_through: u64,
    /// The last change to central that central acknowledged.
    pub acked_through: u64,
    pub last_ack: Option<LastAck>,
    /// A snapshot being received: `(chunks received, chunks in all)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<(u32, u32)>,
}

/// Gathers the report. The router check uses a short timeout so a dead router answers fast.
pub async fn status(config: &Config) -> anyhow::Result<StatusReport> {
    let replica = Replica::open(&config.replica_path())?;
    let now = Utc::now();
    let router = config.router_id;
    let report = replica
        .read(move |conn| {
            let mut by_status: BTreeMap<String, u64> = CustomerStatus::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), 0))
                .collect();
            let mut customers = 0;
            store::for_each_customer(conn, |c| {
                if !c.is_deleted() && c.router() == Some(router) {
                    customers += 1;
                    *by_status
                        .entry(status_at(c.status_inputs(), now).as_str().to_string())
                        .or_default() += 1;
                }
            })?;
            Ok((
                customers,
                by_status,
                store::active_sessions(conn)?.len() as u64,
                store::outbox_depth(conn)?,
                state::get_json::<ClockState>(conn, state::CLOCK)?,
                state::held(conn)?,
                state::get_json::<LastReconcile>(conn, state::LAST_RECONCILE)?,
                state::get_time(conn, state::LAST_TRUSTED)?,
                sync_state(conn)?,
            ))
        })
        .await?;
    let (customers, by_status, sessions, pending, clock, hold, last, trusted, sync) = report;
    let sync = config.central.as_ref().map(|central| {
        let (link, epoch, applied, acked, last_ack, snapshot) = sync;
        SyncReport {
            central: central.url.clone(),
            broker: central.broker.url.to_string(),
            link,
            epoch,
            applied_through: applied,
            acked_through: acked,
            last_ack,
            snapshot,
        }
    });
    let mut options = crate::routeros::ConnectOptions::new(config.router_password.clone());
    options.timeout = Duration::from_secs(5);
    options.known_hosts = Some(config.known_hosts.clone());
    let probe = async {
        let router = crate::routeros::connect(&config.router_url, options).await?;
        router.identity().await
    };
    let router_error = match tokio::time::timeout(Duration::from_secs(8), probe).await {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 8 s".to_string()),
    };
    Ok(StatusReport {
        daemon_running: crate::daemon::run_lock::held(&config.data_dir),
        router_id: config.router_id.to_string(),
        router_url: config.router_url.to_string(),
        router_reachable: router_error.is_none(),
        router_error,
        customers,
        customers_by_status: by_status,
        active_sessions: sessions,
        pending_changes: pending,
        clock,
        mass_cutoff_hold: hold,
        last_reconcile: last,
        last_trusted_time: trusted,
        sync,
        replica: config.replica_path().display().to_string(),
    })
}

type SyncState = (
    Option<SyncLink>,
    Option<String>,
    u64,
    u64,
    Option<LastAck>,
    Option<(u32, u32)>,
);

fn sync_state(conn: &rusqlite::Connection) -> crate::replica::Result<SyncState> {
    Ok((
        state::get_json(conn, state::SYNC_LINK)?,
        store::get_state(conn, "epoch")?,
        state::get_u64(conn, state::SYNC_DOWN_APPLIED)?,
        state::get_u64(conn, state::SYNC_UP_ACKED)?,
        state::get_json(conn, state::SYNC_LAST_ACK)?,
        staging::in_progress(conn)?.map(|(_, p)| (p.received, p.count)),
    ))
}

impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        match self.daemon_running {
            Some(true) => writeln!(f, "agent daemon:     running")?,
            Some(false) => writeln!(
                f,
                "agent daemon:     NOT running (`run` or the systemd unit starts it); the \
                 reconcile and sync lines below are as it last recorded them"
            )?,
            None => writeln!(
                f,
                "agent daemon:     unknown (cannot read the lock file in the data directory)"
            )?,
        }
        writeln!(
            f,
            "router:           {} ({})",
            self.router_url, self.router_id
        )?;
        match &self.router_error {
            None => writeln!(f, "reachable:        yes")?,
            Some(e) => writeln!(f, "reachable:        no: {e}")?,
        }
        let counts: Vec<String> = self
            .customers_by_status
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        writeln!(
            f,
            "customers:        {} ({})",
            self.customers,
            counts.join(", ")
        )?;
        writeln!(f, "active sessions:  {}", self.active_sessions)?;
        writeln!(
            f,
            "pending changes:  {} (waiting for central's acknowledgement)",
            self.pending_changes
        )?;
        let clock = match self.clock {
            Some(ClockState::Synchronised) => "synchronised".to_string(),
            Some(ClockState::Unsynchronised) => {
                "NOT synchronised: expiry cut-offs are held".to_string()
            }
            Some(ClockState::JumpedBackwards) => {
                "jumped backwards: only provably due cut-offs run".to_string()
            }
            None => "unknown (no reconcile yet)".to_string(),
        };
        writeln!(f, "clock:            {clock}")?;
        match &self.mass_cutoff_hold {
            Some(h) => writeln!(
                f,
                "mass cut-off:     HELD since {}: {} of {} customers would be cut off at once; confirm to proceed",
                h.since, h.customers, h.of_total
            )?,
            None => writeln!(f, "mass cut-off:     none held")?,
        }
        match &self.last_reconcile {
            Some(r) => writeln!(
                f,
                "last reconcile:   {} ok={} applied={} failed={} blocked={} ({} ms){}",
                r.at,
                yes_no(r.ok),
                r.applied,
                r.failed,
                r.blocked,
                r.duration_ms,
                r.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            )?,
            None => writeln!(f, "last reconcile:   never")?,
        }
        match &self.sync {
            None => writeln!(
                f,
                "sync:             not configured (standalone; `enroll` joins central)"
            )?,
            Some(sync) => {
                match &sync.link {
                    Some(link) if link.connected && self.daemon_running == Some(false) => writeln!(
                        f,
                        "sync:             last connected to {} (session {}); the agent has \
                             stopped since",
                        link.broker, link.session
                    )?,
                    Some(link) if link.connected => writeln!(
                        f,
                        "sync:             connected to {} since {} (session {})",
                        link.broker, link.since, link.session
                    )?,
                    Some(link) => writeln!(
                        f,
                        "sync:             NOT connected to {} since {}{}",
                        link.broker,
                        link.since,
                        link.reason
                            .as_ref()
                            .map(|r| format!(": {r}"))
                            .unwrap_or_default()
                    )?,
                    None => writeln!(
                        f,
                        "sync:             broker {} configured; the agent has not connected yet",
                        sync.broker
                    )?,
                }
                writeln!(
                    f,
                    "from central:     applied through change {}{}",
                    sync.applied_through,
                    sync.snapshot
                        .map(|(got, of)| format!("; receiving a snapshot ({got} of {of} chunks)"))
                        .unwrap_or_default()
                )?;
                match &sync.last_ack {
                    Some(ack) => writeln!(
                        f,
                        "to central:       acknowledged through change {} at {}",
                        ack.through, ack.at
                    )?,
                    None => writeln!(f, "to central:       nothing acknowledged yet")?,
                }
            }
        }
        write!(f, "replica:          {}", self.replica)
    }
}
