//! Sync with central over MQTT, the agent's side of docs/sync.md. Started by the daemon when
//! the config file has a `[central]` section; without one the agent runs standalone.
//!
//! - `downstream`, `snapshot`: central's changes and snapshots merged into the replica, one
//!   transaction each, position stored with them.
//! - `upstream` (pure) and `publisher` (task): the outbox published and deleted on ack.
//! - `presence`: the retained status, the Last Will, telemetry.
//! - `commands`: disconnect, live status, confirm a mass cut-off.
//! - this file: the connection task. It owns the broker link (the `easyisp_mqtt` transport
//!   runs the event loop in its own task), dispatches what arrives, and publishes acks,
//!   presence and command results with `try_publish`, never waiting on the event loop.
//!
//! Nothing here blocks the other daemon tasks: the reconcile, expiry and counters tasks keep
//! running from the replica whether or not central is reachable.

pub mod commands;
pub mod downstream;
pub mod presence;
pub mod publisher;
pub mod snapshot;
pub mod upstream;

use crate::config::CentralConfig;
use crate::daemon::{Shared, state};
use chrono::{DateTime, Utc};
use downstream::Site;
use easyisp_mqtt::{AsyncClient, Link, LinkEvent, QoS, Session, Will};
use easyisp_protocol::NodeId;
use easyisp_protocol::envelope::{
    self, Ack, ChangeBatch, Command, CommandResult, EnvelopeError, PROTOCOL_VERSION, ResyncRequest,
    SnapshotChunk,
};
use easyisp_protocol::topics::{self, SiteTopic};
use serde::Serialize;
use snapshot::Staged;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;
use uuid::Uuid;

/// MQTT keep-alive: the broker notices a vanished agent (and publishes its Will) within 1.5×.
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The MQTT client id of the agent of `router`.
pub fn client_id(router: Uuid) -> String {
    format!("easyisp-agent-{router}")
}

/// One broker connection (one `session` number, one Last Will).
struct Connection {
    link: Link,
    cancel: CancellationToken,
    session: u64,
    connected: bool,
    ever_connected: bool,
}

/// Everything the connection task keeps.
struct Sync {
    shared: Shared,
    central: CentralConfig,
    router: Uuid,
    site: Site,
    epoch: String,
    started_at: DateTime<Utc>,
    publisher: mpsc::UnboundedSender<publisher::Input>,
    results: mpsc::UnboundedSender<CommandResult>,
    commands: TaskTracker,
}

/// Runs sync until `cancel`; then publishes the offline status and disconnects.
pub async fn run(shared: Shared, central: CentralConfig, cancel: CancellationToken) {
    let router = shared.config.router_id;
    let epoch = match shared
        .replica
        .write(|tx| crate::replica::store::epoch(tx))
        .await
    {
        Ok(epoch) => epoch,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the replica's epoch; sync with central is off");
            return;
        }
    };
    let (publisher_tx, publisher_rx) = mpsc::unbounded_channel();
    let publisher_task = tokio::spawn(publisher::run(
        shared.clone(),
        epoch.clone(),
        publisher_rx,
        cancel.child_token(),
    ));
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let sync = Sync {
        site: Site {
            tenant: shared.config.tenant_id,
            router,
            node: NodeId::from_uuid(router),
        },
        shared,
        central,
        router,
        epoch,
        started_at: Utc::now(),
        publisher: publisher_tx,
        results: results_tx,
        commands: TaskTracker::new(),
    };
    tracing::info!(broker = %sync.central.broker.url, epoch = %sync.epoch, "sync with central starting");
    let Some(mut connection) = sync.open().await else {
        return;
    };
    let mut telemetry = tokio::time::interval(sync.shared.config.telemetry_interval);
    telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            event = connection.link.events.recv() => match event {
                Some(LinkEvent::Connected) => sync.connected(&mut connection).await,
                Some(LinkEvent::Disconnected { reason }) => {
                    if sync.disconnected(&mut connection, reason).await {
                        // A new connection gets a new session number, and so a new Last
                        // Will. The pause keeps two copies of one agent (same client id,
                        // taking the connection from each other) from spinning.
                        connection.cancel.cancel();
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            _ = tokio::time::sleep(easyisp_mqtt::backoff(0)) => {}
                        }
                        if let Some(next) = sync.open().await {
                            connection = next;
                        }
                    }
                }
                Some(LinkEvent::Message { topic, payload }) => {
                    if connection.connected {
                        sync.message(&connection.link.client, &topic, &payload).await;
                    }
                }
                None => {
                    // The transport task ended on its own: start a new one after a pause.
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(easyisp_mqtt::backoff(3)) => {}
                    }
                    match sync.open().await {
                        Some(next) => connection = next,
                        None => break,
                    }
                }
            },
            _ = telemetry.tick() => {
                if connection.connected {
                    sync.telemetry(&connection.link.client).await;
                }
            }
            Some(result) = results.recv() => {
                if connection.connected {
                    publish(&connection.link.client, SiteTopic::UpCmdResult, sync.router, &result, false);
                }
            }
        }
    }
    sync.shutdown(connection).await;
    let _ = publisher_task.await;
}

impl Sync {
    /// Starts a broker connection with a new session number (persisted first: the Last Will
    /// carries it).
    async fn open(&self) -> Option<Connection> {
        let session = match self
            .shared
            .replica
            .write(|tx| {
                let session = state::get_u64(tx, state::SYNC_SESSION)? + 1;
                state::set_u64(tx, state::SYNC_SESSION, session)?;
                Ok(session)
            })
            .await
        {
            Ok(session) => session,
            Err(e) => {
                tracing::error!(error = %e, "cannot write the replica; sync with central is off");
                return None;
            }
        };
        let subscriptions = [
            SiteTopic::DownChanges,
            SiteTopic::DownAck,
            SiteTopic::DownSnapshot,
            SiteTopic::DownCmd,
        ]
        .into_iter()
        .map(|t| (t.for_router(self.router), QoS::AtLeastOnce))
        .collect();
        let will = Will {
            topic: SiteTopic::Status.for_router(self.router),
            payload: envelope::encode(&presence::offline(self.router, session)),
            retain: true,
        };
        // Not a child of the task's token: on shutdown the offline status must be queued
        // before the transport sends DISCONNECT.
        let token = CancellationToken::new();
        let mqtt_session = Session {
            client_id: client_id(self.router),
            keep_alive: KEEP_ALIVE,
            will: Some(will),
            subscriptions,
        };
        match easyisp_mqtt::connect(&self.central.broker, mqtt_session, token.clone()) {
            Ok(link) => Some(Connection {
                link,
                cancel: token,
                session,
                connected: false,
                ever_connected: false,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the broker connection; sync with central is off");
                None
            }
        }
    }

    async fn connected(&self, connection: &mut Connection) {
        connection.connected = true;
        connection.ever_connected = true;
        let applied = self
            .shared
            .replica
            .read(|c| state::get_u64(c, state::SYNC_DOWN_APPLIED))
            .await
            .unwrap_or(0);
        let client = &connection.link.client;
        // Our birth: central answers with the downstream stream and a `down/ack`.
        let status = presence::online(
            self.router,
            connection.session,
            &self.epoch,
            applied,
            self.started_at,
        );
        publish(client, SiteTopic::Status, self.router, &status, true);
        let _ = self
            .publisher
            .send(publisher::Input::Connected(client.clone()));
        tracing::info!(
            session = connection.session,
            applied,
            "sync: connected to central's broker"
        );
        self.record_link(true, connection.session, None).await;
    }

    /// Returns the connection to use from now on when the old one was replaced.
    /// Returns whether to replace the connection (it had connected; a connection that never
    /// got through is retried by the transport with backoff, under the same session).
    async fn disconnected(&self, connection: &mut Connection, reason: String) -> bool {
        let was_connected = connection.connected;
        connection.connected = false;
        let _ = self.publisher.send(publisher::Input::Disconnected);
        self.record_link(false, connection.session, Some(reason.clone()))
            .await;
        if !connection.ever_connected {
            tracing::warn!(%reason, "sync: central's broker is unreachable; retrying");
            return false;
        }
        if was_connected {
            tracing::warn!(%reason, "sync: lost the broker connection; reconnecting");
        }
        true
    }

    async fn record_link(&self, connected: bool, session: u64, reason: Option<String>) {
        self.shared.metrics.set_broker_connected(connected);
        let link = state::SyncLink {
            broker: self.central.broker.url.to_string(),
            connected,
            since: Utc::now(),
            session,
            reason,
        };
        if let Err(e) = self
            .shared
            .replica
            .write(move |tx| state::set_json(tx, state::SYNC_LINK, &link))
            .await
        {
            tracing::warn!(error = %e, "cannot record the broker connection state");
        }
    }

    async fn telemetry(&self, client: &AsyncClient) {
        match presence::telemetry(&self.shared, Utc::now()).await {
            Ok(t) => {
                let topic = SiteTopic::Telemetry.for_router(self.router);
                let _ = client.try_publish(topic, QoS::AtMostOnce, false, envelope::encode(&t));
            }
            Err(e) => tracing::warn!(error = %e, "cannot read telemetry from the replica"),
        }
    }

    async fn message(&self, client: &AsyncClient, topic: &str, payload: &[u8]) {
        let Some((router, kind)) = topics::parse(topic).filter(|(r, _)| *r == self.router) else {
            tracing::debug!(%topic, "ignored a message on a foreign topic");
            return;
        };
        let _ = router;
        match kind {
            SiteTopic::DownChanges => {
                if let Some(batch) = decode::<ChangeBatch>(topic, payload) {
                    self.changes(client, batch).await;
                }
            }
            SiteTopic::DownAck => {
                if let Some(ack) = decode::<Ack>(topic, payload)
                    && ack.epoch == self.epoch
                {
                    let _ = self.publisher.send(publisher::Input::Ack(ack));
                }
            }
            SiteTopic::DownSnapshot => {
                if let Some(chunk) = decode::<SnapshotChunk>(topic, payload) {
                    self.snapshot(client, chunk).await;
                }
            }
            SiteTopic::DownCmd => {
                if let Some(command) = decode::<Command>(topic, payload) {
                    self.command(client, command);
                }
            }
            _ => {}
        }
    }

    async fn changes(&self, client: &AsyncClient, batch: ChangeBatch) {
        let span = tracing::info_span!(
            "sync_batch",
            direction = "down",
            first_seq = batch.first_seq,
            last_seq = batch.last_seq
        );
        self.apply_changes(client, batch).instrument(span).await;
    }

    async fn apply_changes(&self, client: &AsyncClient, batch: ChangeBatch) {
        if batch.epoch != self.epoch {
            tracing::debug!(epoch = %batch.epoch, "ignored a batch for another replica epoch");
            return;
        }
        let site = self.site;
        let applied = self
            .shared
            .replica
            .write(move |tx| downstream::apply_batch(tx, &batch, &site, Utc::now()))
            .await;
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => {
                // Not acked: central resends after its timeout.
                tracing::error!(error = %e, "cannot apply central's changes to the replica");
                return;
            }
        };
        if applied.malformed {
            tracing::warn!("ignored a malformed batch from central");
            return;
        }
        for rejected in &applied.rejected {
            tracing::warn!(seq = rejected.seq, reason = %rejected.reason, "rejected a change from central");
        }
        if let Some(from) = applied.resend_from {
            tracing::info!(
                resend_from = from,
                "gap in central's changes; asked for a resend"
            );
        }
        let ack = Ack {
            v: PROTOCOL_VERSION,
            router: self.router,
            epoch: self.epoch.clone(),
            acked_through: applied.acked_through,
            resend_from: applied.resend_from,
            rejected: applied.rejected,
            must_resync: false,
        };
        publish(client, SiteTopic::UpAck, self.router, &ack, false);
        tracing::debug!(
            acked_through = ack.acked_through,
            changed = applied.effects.replica_changed,
            "applied central's changes"
        );
        if applied.effects.packages_changed {
            self.shared.replica_changed();
        } else if applied.effects.replica_changed {
            self.shared.customers_changed(&applied.effects.customers);
        }
        if applied.effects.conflicts > 0 {
            self.shared.outbox_changed();
        }
    }

    async fn snapshot(&self, client: &AsyncClient, chunk: SnapshotChunk) {
        if chunk.epoch != self.epoch {
            tracing::debug!(epoch = %chunk.epoch, "ignored a snapshot for another replica epoch");
            return;
        }
        let (id, index, count) = (chunk.snapshot_id, chunk.index, chunk.count);
        let site = self.site;
        let staged = self
            .shared
            .replica
            .write(move |tx| snapshot::stage_and_apply(tx, &chunk, &site, Utc::now()))
            .await;
        match staged {
            Ok(Staged::Waiting(progress)) => {
                tracing::debug!(snapshot = %id, index, received = progress.received, count, "staged a snapshot chunk");
            }
            Ok(Staged::Invalid(reason)) => {
                tracing::warn!(snapshot = %id, %reason, "ignored a snapshot chunk");
            }
            Ok(Staged::Applied {
                acked_through,
                customers,
                removed,
                rejected,
                effects,
            }) => {
                tracing::info!(
                    snapshot = %id,
                    customers,
                    removed,
                    rejected,
                    high_water_seq = acked_through,
                    "applied central's snapshot"
                );
                let ack = Ack {
                    v: PROTOCOL_VERSION,
                    router: self.router,
                    epoch: self.epoch.clone(),
                    acked_through,
                    resend_from: None,
                    rejected: Vec::new(),
                    must_resync: false,
                };
                publish(client, SiteTopic::UpAck, self.router, &ack, false);
                self.shared.replica_changed();
                if effects.conflicts > 0 {
                    self.shared.outbox_changed();
                }
            }
            Err(e) => tracing::error!(snapshot = %id, error = %e, "cannot stage a snapshot chunk"),
        }
    }

    fn command(&self, client: &AsyncClient, command: Command) {
        if commands::expired(command.expires_at, Utc::now()) {
            tracing::debug!(id = %command.id, "ignored an expired command");
            return;
        }
        tracing::info!(id = %command.id, command = ?command.command, "command from central");
        if let easyisp_protocol::envelope::CommandKind::Resync = command.command {
            self.request_resync(client, "resync command from central");
        }
        let shared = self.shared.clone();
        let results = self.results.clone();
        self.commands.spawn(async move {
            let outcome = commands::execute(&shared, &command.command).await;
            let _ = results.send(CommandResult {
                v: PROTOCOL_VERSION,
                id: command.id,
                outcome,
            });
        });
    }

    fn request_resync(&self, client: &AsyncClient, reason: &str) {
        let request = ResyncRequest {
            v: PROTOCOL_VERSION,
            router: self.router,
            epoch: self.epoch.clone(),
            reason: reason.to_string(),
        };
        publish(client, SiteTopic::UpResync, self.router, &request, false);
    }

    /// Clean shutdown: offline status first (retained), then DISCONNECT, so the Will is not
    /// needed.
    async fn shutdown(&self, connection: Connection) {
        if connection.connected {
            let status = presence::offline(self.router, connection.session);
            publish(
                &connection.link.client,
                SiteTopic::Status,
                self.router,
                &status,
                true,
            );
        }
        connection.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), connection.link.task).await;
        self.commands.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.commands.wait()).await;
        self.record_link(false, connection.session, Some("the agent stopped".into()))
            .await;
        tracing::info!("sync: disconnected from central's broker");
    }
}

/// Queues a QoS 1 publish without waiting; a full queue drops it (the protocol's resend rules
/// repair that: central resends unacknowledged batches, the next connection republishes the
/// status).
fn publish<T: Serialize>(
    client: &AsyncClient,
    topic: SiteTopic,
    router: Uuid,
    body: &T,
    retain: bool,
) {
    let topic = topic.for_router(router);
    if let Err(e) = client.try_publish(
        topic.clone(),
        QoS::AtLeastOnce,
        retain,
        envelope::encode(body),
    ) {
        tracing::warn!(%topic, error = %e, "could not queue a message for the broker");
    }
}

fn decode<T: for<'de> serde::Deserialize<'de>>(topic: &str, payload: &[u8]) -> Option<T> {
    match envelope::decode(payload) {
        Ok(value) => Some(value),
        Err(e @ EnvelopeError::Unsupported { .. }) => {
            tracing::error!(%topic, error = %e, "central speaks a newer protocol; upgrade this agent");
            None
        }
        Err(e) => {
            tracing::warn!(%topic, error = %e, "ignored a malformed message");
            None
        }
    }
}
