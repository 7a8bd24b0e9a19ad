//! `easyisp-agent run`: the daemon. One task per concern — reconcile, expiry, counters, and
//! sync with central when the config has a `[central]` section — each with a child
//! cancellation token, all in one task tracker. On SIGTERM everything is cancelled and awaited
//! with a deadline.
//!
//! The tasks share the replica (SQLite, one writer), a lazily connected router link, and
//! `Notify`s that wake them when the replica or the outbox changed.

mod counters_task;
mod expiry_task;
pub mod metrics;
mod metrics_task;
mod reconcile_task;
pub mod router_link;
pub mod run_lock;
pub mod state;
mod timekeeping;

use crate::config::Config;
use crate::replica::{Replica, ReplicaError};
use easyisp_protocol::session::SessionKind;
use router_link::RouterLink;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

pub use reconcile_task::reconcile_once;

/// What the tasks share.
#[derive(Clone)]
pub struct Shared {
    pub config: Arc<Config>,
    pub replica: Replica,
    pub router: RouterLink,
    /// Notified whenever the replica's customers or packages change.
    pub changed: Arc<Notify>,
    /// Notified when the expiry task wants an immediate reconcile.
    pub reconcile_now: Arc<Notify>,
    /// Notified whenever expiries may have changed, so the expiry task re-plans.
    pub expiry_wake: Arc<Notify>,
    /// Sessions the reconcile dropped on purpose, so their records end with `Admin-Reset`.
    pub kicked: Arc<std::sync::Mutex<Vec<(SessionKind, String)>>>,
    /// Notified whenever a change was queued in the outbox, so the sync publisher sends it.
    pub outbox_grew: Arc<Notify>,
    /// Counters for the Prometheus endpoint (`agent.metrics_listen`).
    pub metrics: Arc<metrics::Metrics>,
    /// What changed since the reconcile task last looked (it takes and clears it).
    pub dirty: Arc<std::sync::Mutex<Dirty>>,
}

/// What changed in the replica since the last reconcile pass began.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Dirty {
    /// Something beyond individual customers (packages, a snapshot): a full pass is needed.
    pub full: bool,
    /// Customers whose router objects may need changing: a targeted pass will do.
    pub customers: BTreeSet<Uuid>,
}

impl Shared {
    pub fn open(config: Config) -> Result<Shared, ReplicaError> {
        let replica = Replica::open(&config.replica_path())?;
        let router = RouterLink::new(&config);
        Ok(Shared {
            config: Arc::new(config),
            replica,
            router,
            changed: Arc::new(Notify::new()),
            reconcile_now: Arc::new(Notify::new()),
            expiry_wake: Arc::new(Notify::new()),
            kicked: Arc::default(),
            outbox_grew: Arc::new(Notify::new()),
            metrics: Arc::default(),
            dirty: Arc::default(),
        })
    }

    /// Whether the system clock may be trusted: the config says so, or the kernel reports NTP
    /// synchronisation.
    pub fn clock_synchronised(&self) -> bool {
        self.config.assume_clock_synchronised || crate::clock::kernel_says_synchronised()
    }

    /// Tells the reconcile and expiry tasks that customers or packages changed (the next
    /// reconcile pass is a full one).
    pub fn replica_changed(&self) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.full = true;
        }
        self.changed.notify_one();
        self.expiry_wake.notify_one();
    }

    /// Tells the reconcile and expiry tasks that these customers changed (and nothing else):
    /// the reconcile task may look at just their router objects.
    pub fn customers_changed(&self, customers: &BTreeSet<Uuid>) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.customers.extend(customers.iter().copied());
        }
        self.changed.notify_one();
        self.expiry_wake.notify_one();
    }

    /// Takes what changed since the last call. A poisoned lock counts as "everything".
    pub fn take_dirty(&self) -> Dirty {
        match self.dirty.lock() {
            Ok(mut dirty) => std::mem::take(&mut *dirty),
            Err(_) => Dirty {
                full: true,
                customers: BTreeSet::new(),
            },
        }
    }

    /// Tells the sync publisher that the outbox has new changes for central.
    pub fn outbox_changed(&self) {
        self.outbox_grew.notify_one();
    }
}

/// Overrides for the intervals of the config file (`run --reconcile-interval ...`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides {
    pub reconcile_interval: Option<Duration>,
    pub poll_interval: Option<Duration>,
    /// `run --metrics-listen`: replaces `agent.metrics_listen` (already checked).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Runs the agent until `shutdown` is cancelled.
pub async fn run(
    mut config: Config,
    overrides: Overrides,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Some(interval) = overrides.reconcile_interval {
        config.reconcile_interval = interval;
    }
    if let Some(interval) = overrides.poll_interval {
        config.poll_interval = interval;
    }
    if let Some(addr) = overrides.metrics_listen {
        config.metrics_listen = Some(addr);
    }
    // Before the replica is opened: a second daemon on the same data directory stops here.
    let _lock = run_lock::acquire(&config.data_dir)?;
    let shared = Shared::open(config)?;
    tracing::info!(
        router = %shared.config.router_id,
        url = %shared.config.router_url,
        replica = %shared.replica.path().display(),
        reconcile_interval = ?shared.config.reconcile_interval,
        poll_interval = ?shared.config.poll_interval,
        "agent starting"
    );
    let tracker = TaskTracker::new();
    tracker.spawn(reconcile_task::run(shared.clone(), shutdown.child_token()));
    tracker.spawn(expiry_task::run(shared.clone(), shutdown.child_token()));
    tracker.spawn(counters_task::run(shared.clone(), shutdown.child_token()));
    match shared.config.central.clone() {
        Some(central) => {
            tracker.spawn(crate::sync::run(
                shared.clone(),
                central,
                shutdown.child_token(),
            ));
        }
        None => tracing::info!("no [central] section in the config: running standalone"),
    }
    if let Some(addr) = shared.config.metrics_listen {
        // A taken port must not stop the agent from enforcing expiry: it runs without metrics
        // and says so.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => {
                tracing::info!(%addr, "serving Prometheus metrics at /metrics");
                tracker.spawn(metrics_task::run(
                    shared.clone(),
                    listener,
                    shutdown.child_token(),
                ));
            }
            Err(e) => tracing::error!(
                %addr,
                error = %e,
                "cannot listen for metrics; running without them (fix agent.metrics_listen)"
            ),
        }
    }
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("agent stopping");
    if tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 10 s");
    }
    Ok(())
}

/// Capped exponential backoff with jitter, for retrying an unreachable router.
pub fn backoff(attempt: u32) -> Duration {
    let base_ms = 500u64.saturating_mul(1u64 << attempt.min(7)).min(60_000);
    // Jitter without a random-number crate: the sub-second clock is random enough to spread
    // agents that lost the same router at the same moment.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::from(d.subsec_nanos()))
        .unwrap_or(0);
    Duration::from_millis(base_ms / 2 + nanos % (base_ms / 2 + 1))
}
