//! Central's side of sync with the agents over MQTT (docs/sync.md): one connection to the
//! broker, a dispatcher that routes every agent message to its router's task, and the
//! commands operators send to routers (disconnect, live status).
//!
//! - `engine`: the dispatcher. It never waits on storage or on a publish; it forwards
//!   messages to per-router tasks over unbounded channels and wakes them after commits that
//!   wrote downstream changes ([`crate::storage::sync::DownSignal`]).
//! - `router`: one task per router: presence, the downstream window (at most 4 unacked
//!   batches, resent after 10 s, on `resendFrom` and on a birth), snapshots, the upstream
//!   apply and its acks. All SQLite work goes through `Storage`.
//! - `chunk`: pure helpers that cut snapshots into chunks and batches into envelopes.
//! - `commands`: request/response over `down/cmd` and `up/cmd-result`.
//!
//! Logs: one line per meaningful event (agent online/offline, snapshot sent, resend, batch
//! with rejected changes, resync); never a payload, which may carry customer passwords.

mod chunk;
mod commands;
mod engine;
mod router;

pub use commands::CommandError;

use crate::storage::Storage;
use easyisp_mqtt::{AsyncClient, Endpoint, MqttError, QoS, Session};
use easyisp_protocol::envelope::{CommandKind, CommandOutcome};
use easyisp_protocol::topics::{ROOT, SiteTopic};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

/// At most this many downstream batches wait for an ack per router.
pub const WINDOW: usize = 4;
/// A batch (or snapshot) without an ack within this time is sent again.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// A snapshot not acknowledged within this time is read and sent again.
pub const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(60);

/// What the API uses: commands to routers and whether a router's agent is online.
#[derive(Clone)]
pub struct SyncHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle").finish_non_exhaustive()
    }
}

/// State shared by the dispatcher, the router tasks and the API.
struct Shared {
    client: AsyncClient,
    /// Routers whose agent is online (its birth was processed, no offline status since).
    online: Mutex<HashSet<Uuid>>,
    /// Whether central's connection to the broker is up (for `/metrics`).
    connected: AtomicBool,
    commands: commands::Pending,
}

impl Shared {
    fn set_online(&self, router: Uuid, online: bool) {
        if let Ok(mut set) = self.online.lock() {
            if online {
                set.insert(router);
            } else {
                set.remove(&router);
            }
        }
    }

    fn is_online(&self, router: Uuid) -> bool {
        self.online.lock().is_ok_and(|set| set.contains(&router))
    }

    /// Publishes an envelope at QoS 1; failures are logged (the protocol resends).
    async fn publish(&self, router: Uuid, topic: SiteTopic, payload: Vec<u8>) -> bool {
        let result = self
            .client
            .publish(topic.for_router(router), QoS::AtLeastOnce, false, payload)
            .await;
        if let Err(e) = &result {
            tracing::warn!(%router, topic = topic.suffix(), error = %e, "could not queue a publish");
        }
        result.is_ok()
    }
}

impl SyncHandle {
    /// Sends `command` to the router's agent and waits up to `wait` for its result.
    pub async fn command(
        &self,
        router: Uuid,
        command: CommandKind,
        wait: Duration,
    ) -> Result<CommandOutcome, CommandError> {
        commands::send(&self.shared, router, command, wait).await
    }

    /// Whether the router's agent is online now.
    pub fn is_online(&self, router: Uuid) -> bool {
        self.shared.is_online(router)
    }

    /// Whether central's own connection to the broker is up now.
    pub fn broker_connected(&self) -> bool {
        self.shared.connected.load(Ordering::Relaxed)
    }
}

/// The topics central subscribes to: every site's presence, telemetry and upstream.
fn subscriptions() -> Vec<(String, QoS)> {
    [
        SiteTopic::Status,
        SiteTopic::Telemetry,
        SiteTopic::UpChanges,
        SiteTopic::UpAck,
        SiteTopic::UpResync,
        SiteTopic::UpCmdResult,
    ]
    .into_iter()
    .map(|t| (format!("{ROOT}/+/{}", t.suffix()), QoS::AtLeastOnce))
    .collect()
}

/// Connects to the broker and starts the sync tasks under `tracker`; they stop when
/// `cancel` fires.
pub fn start(
    storage: Storage,
    endpoint: &Endpoint,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Result<SyncHandle, MqttError> {
    let session = Session {
        client_id: format!(
            "easyisp-central-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        ),
        keep_alive: Duration::from_secs(30),
        will: None,
        subscriptions: subscriptions(),
    };
    let link = easyisp_mqtt::connect(endpoint, session, cancel.child_token())?;
    let shared = Arc::new(Shared {
        client: link.client.clone(),
        online: Mutex::new(HashSet::new()),
        connected: AtomicBool::new(false),
        commands: commands::Pending::default(),
    });
    tracing::info!(broker = %endpoint.url, "sync engine connecting to the broker");
    tracker.spawn(engine::run(
        storage,
        link,
        shared.clone(),
        cancel,
        tracker.clone(),
    ));
    Ok(SyncHandle { shared })
}
