//! One router's sync task. It owns the router's stream state and handles, in arrival order,
//! what its agent sends: presence (births start or resume the stream, or send a snapshot),
//! upstream batches (applied in one transaction, then acked), acks of the downstream stream,
//! resync requests and telemetry; plus wake-ups after commits and its own timers.

use super::chunk::{CHUNK_ITEMS_BYTES, batch, snapshot_chunks};
use super::{ACK_TIMEOUT, SNAPSHOT_TIMEOUT, Shared, WINDOW};
use crate::storage::sync::{AckOutcome, BirthPlan, DownRead, Presence, RawBatch, UpOutcome};
use crate::storage::{Storage, StorageError};
use easyisp_protocol::envelope::{
    Ack, MAX_BATCH_CHANGES, PROTOCOL_VERSION, ResyncRequest, Status, TARGET_BATCH_BYTES, Telemetry,
    encode,
};
use easyisp_protocol::topics::SiteTopic;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// After a storage error the task tries again this much later.
const RETRY: Duration = Duration::from_secs(1);
/// Warnings about an unknown router repeat at most this often.
const UNKNOWN_WARNING_EVERY: Duration = Duration::from_secs(300);

/// What the dispatcher hands a router task.
pub(super) enum Input {
    Status(Status),
    Telemetry(Box<Telemetry>),
    UpChanges(RawBatch),
    UpAck(Ack),
    Resync(ResyncRequest),
    /// Commits wrote new downstream changes for this router.
    Wake,
    /// Central's broker connection dropped: wait for the agent's next birth.
    BrokerLost,
}

/// The downstream stream to an online agent.
struct Stream {
    epoch: String,
    /// Everything up to here is applied by the agent.
    acked: u64,
    /// Everything up to here has been published.
    sent: u64,
    /// Unacknowledged batches: last seq and when it was sent.
    inflight: VecDeque<(u64, Instant)>,
    snapshot: Option<SnapshotInFlight>,
}

/// A snapshot owed to the agent: sent (with its high-water seq) and waiting for the ack,
/// or not sent yet because reading it failed. `due` is when to send it (again).
struct SnapshotInFlight {
    high_water: Option<u64>,
    due: Instant,
}

struct RouterTask {
    router: Uuid,
    storage: Storage,
    shared: Arc<Shared>,
    stream: Option<Stream>,
    retry_at: Option<Instant>,
    warned_unknown: Option<Instant>,
}

pub(super) async fn run(
    router: Uuid,
    storage: Storage,
    shared: Arc<Shared>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    cancel: CancellationToken,
) {
    let mut task = RouterTask {
        router,
        storage,
        shared,
        stream: None,
        retry_at: None,
        warned_unknown: None,
    };
    loop {
        let deadline = task.deadline();
        tokio::select! {
            _ = cancel.cancelled() => break,
            input = inputs.recv() => match input {
                Some(input) => task.handle(input).await,
                None => break,
            },
            _ = sleep_until(deadline), if deadline.is_some() => task.on_timer().await,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(at) = deadline {
        tokio::time::sleep_until(at).await;
    }
}

impl RouterTask {
    /// The earliest of: the oldest unacked batch's timeout, the snapshot's, a retry.
    fn deadline(&self) -> Option<Instant> {
        let stream = self.stream.as_ref();
        let batch = stream
            .and_then(|s| s.inflight.front())
            .map(|(_, at)| *at + ACK_TIMEOUT);
        let snapshot = stream.and_then(|s| s.snapshot.as_ref()).map(|s| s.due);
        [batch, snapshot, self.retry_at].into_iter().flatten().min()
    }

    async fn handle(&mut self, input: Input) {
        match input {
            Input::Status(status) => self.on_status(status).await,
            Input::Telemetry(telemetry) => self.on_telemetry(*telemetry).await,
            Input::UpChanges(batch) => self.on_up_changes(batch).await,
            Input::UpAck(ack) => self.on_ack(ack).await,
            Input::Resync(request) => self.on_resync(request).await,
            Input::Wake => self.pump().await,
            Input::BrokerLost => self.stream = None,
        }
    }

    fn warn_unknown(&mut self, what: &str) {
        let now = Instant::now();
        if self
            .warned_unknown
            .is_none_or(|at| now.duration_since(at) >= UNKNOWN_WARNING_EVERY)
        {
            self.warned_unknown = Some(now);
            tracing::warn!(router = %self.router, message = what,
                "ignored a message from a router central does not know (deleted, or never created)");
        }
    }

    fn storage_failed(&mut self, what: &str, e: &StorageError) {
        if matches!(e, StorageError::NotFound) {
            // The router was deleted meanwhile: its agent gets nothing more.
            self.stream = None;
            self.shared.set_online(self.router, false);
            return self.warn_unknown(what);
        }
        tracing::error!(router = %self.router, error = %e, "sync could not {what}; retrying");
        self.retry_at = Some(Instant::now() + RETRY);
    }

    async fn publish_ack(&self, ack: Ack) {
        self.shared
            .publish(self.router, SiteTopic::DownAck, encode(&ack))
            .await;
    }

    async fn on_status(&mut self, status: Status) {
        let (online, session) = (status.online, status.session);
        let presence = match self.storage.record_presence(self.router, status).await {
            Ok(presence) => presence,
            Err(e) => return self.storage_failed("record a status", &e),
        };
        match presence {
            Presence::Unknown => self.warn_unknown("status"),
            Presence::Stale { last_session } => {
                tracing::debug!(router = %self.router, session, last_session, online,
                    "ignored the status of an older connection");
            }
            Presence::Offline => {
                tracing::info!(router = %self.router, session, "agent offline");
                self.shared.set_online(self.router, false);
                self.stream = None;
            }
            Presence::OnlineWithoutEpoch => {
                tracing::warn!(router = %self.router, session,
                    "agent online without a replica epoch; nothing is streamed to it");
                self.shared.set_online(self.router, true);
                self.stream = None;
            }
            Presence::Birth {
                epoch,
                plan,
                up_applied,
                ..
            } => {
                self.shared.set_online(self.router, true);
                self.publish_ack(Ack {
                    v: PROTOCOL_VERSION,
                    router: self.router,
                    epoch: epoch.clone(),
                    acked_through: up_applied,
                    resend_from: None,
                    rejected: Vec::new(),
                    must_resync: false,
                })
                .await;
                match plan {
                    BirthPlan::Resume { from } => {
                        tracing::info!(router = %self.router, session, %epoch, from,
                            "agent online; resuming the stream");
                        self.stream = Some(Stream {
                            epoch,
                            acked: from - 1,
                            sent: from - 1,
                            inflight: VecDeque::new(),
                            snapshot: None,
                        });
                        self.pump().await;
                    }
                    BirthPlan::Snapshot { reason } => {
                        tracing::info!(router = %self.router, session, %epoch, %reason,
                            "agent online; a snapshot follows");
                        self.stream = Some(Stream {
                            epoch,
                            acked: 0,
                            sent: 0,
                            inflight: VecDeque::new(),
                            snapshot: None,
                        });
                        self.send_snapshot(reason).await;
                    }
                }
            }
        }
    }

    async fn on_telemetry(&mut self, telemetry: Telemetry) {
        let value = serde_json::to_value(&telemetry).unwrap_or_default();
        match self.storage.record_telemetry(self.router, value).await {
            Ok(true) => {}
            Ok(false) => self.warn_unknown("telemetry"),
            Err(e) => {
                tracing::warn!(router = %self.router, error = %e, "could not store telemetry")
            }
        }
    }

    async fn on_up_changes(&mut self, batch: RawBatch) {
        let (epoch, first, last) = (batch.epoch.clone(), batch.first_seq, batch.last_seq);
        let outcome = match self.storage.apply_up_batch(self.router, batch).await {
            Ok(outcome) => outcome,
            Err(e) => {
                // No ack: the agent sends the batch again after its timeout.
                tracing::error!(router = %self.router, first, last, error = %e,
                    "could not apply an upstream batch");
                return;
            }
        };
        let ack = |acked_through, resend_from, rejected| Ack {
            v: PROTOCOL_VERSION,
            router: self.router,
            epoch: epoch.clone(),
            acked_through,
            resend_from,
            rejected,
            must_resync: false,
        };
        match outcome {
            UpOutcome::Unknown => self.warn_unknown("up/changes"),
            UpOutcome::WrongEpoch { known } => {
                tracing::warn!(router = %self.router, batch_epoch = %epoch, known = ?known, first, last,
                    "ignored an upstream batch of another replica epoch (its birth tells central about it)");
            }
            UpOutcome::Gap { applied } => {
                tracing::info!(router = %self.router, first, applied,
                    "upstream gap; asking the agent to resend");
                self.publish_ack(ack(applied, Some(applied + 1), Vec::new()))
                    .await;
            }
            UpOutcome::Applied {
                acked_through,
                applied,
                duplicates,
                rejected,
            } => {
                if rejected.is_empty() {
                    tracing::debug!(router = %self.router, first, last, applied, duplicates,
                        "applied an upstream batch");
                } else {
                    let reasons: Vec<String> = rejected
                        .iter()
                        .map(|r| format!("{}: {}", r.seq, r.reason))
                        .collect();
                    tracing::warn!(router = %self.router, first, last, applied, duplicates,
                        rejected = %reasons.join("; "), "upstream batch had rejected changes");
                }
                self.publish_ack(ack(acked_through, None, rejected)).await;
            }
        }
    }

    async fn on_ack(&mut self, ack: Ack) {
        let Some(stream) = &self.stream else {
            tracing::debug!(router = %self.router, "ignored an ack: no stream to this agent");
            return;
        };
        if ack.epoch != stream.epoch {
            tracing::debug!(router = %self.router, "ignored an ack of another epoch");
            return;
        }
        let high_water = stream.snapshot.as_ref().and_then(|s| s.high_water);
        let outcome = match self
            .storage
            .record_down_ack(
                self.router,
                ack.epoch.clone(),
                ack.acked_through,
                high_water,
            )
            .await
        {
            Ok(outcome) => outcome,
            Err(e) => return self.storage_failed("record an ack", &e),
        };
        if !ack.rejected.is_empty() {
            let reasons: Vec<String> = ack
                .rejected
                .iter()
                .map(|r| format!("{}: {}", r.seq, r.reason))
                .collect();
            tracing::warn!(router = %self.router, rejected = %reasons.join("; "),
                "the agent rejected downstream changes");
        }
        let AckOutcome::Acked {
            acked_through,
            snapshot_done,
        } = outcome
        else {
            return;
        };
        let Some(stream) = &mut self.stream else {
            return;
        };
        stream.acked = stream.acked.max(acked_through);
        if snapshot_done {
            tracing::info!(router = %self.router, acked_through, "snapshot acknowledged; streaming");
            stream.snapshot = None;
            stream.sent = stream.acked;
        }
        while stream
            .inflight
            .front()
            .is_some_and(|(last, _)| *last <= stream.acked)
        {
            stream.inflight.pop_front();
        }
        if ack.must_resync {
            self.request_snapshot("the agent cannot continue incrementally")
                .await;
            return;
        }
        if let Some(from) = ack.resend_from
            && stream.snapshot.is_none()
        {
            tracing::info!(router = %self.router, from, "the agent saw a gap; resending");
            stream.sent = from.saturating_sub(1).max(stream.acked);
            stream.inflight.clear();
        }
        self.pump().await;
    }

    async fn on_resync(&mut self, request: ResyncRequest) {
        let Some(stream) = &self.stream else {
            tracing::debug!(router = %self.router, "ignored a resync request: agent not online");
            return;
        };
        if request.epoch != stream.epoch {
            tracing::warn!(router = %self.router, "ignored a resync request of another epoch");
            return;
        }
        tracing::info!(router = %self.router, reason = %request.reason, "the agent asked for a resync");
        self.request_snapshot("the agent asked for a resync").await;
    }

    /// Records that a snapshot is owed (it survives a restart of central) and sends it.
    async fn request_snapshot(&mut self, reason: &str) {
        if let Err(e) = self.storage.request_snapshot(self.router).await {
            return self.storage_failed("record a resync request", &e);
        }
        self.send_snapshot(reason).await;
    }

    async fn send_snapshot(&mut self, reason: &str) {
        let Some(stream) = &mut self.stream else {
            return;
        };
        // Until it is sent, nothing else is: no batches before a snapshot.
        stream.inflight.clear();
        stream.snapshot = Some(SnapshotInFlight {
            high_water: None,
            due: Instant::now() + RETRY,
        });
        let snapshot = match self.storage.read_snapshot(self.router).await {
            Ok(snapshot) => snapshot,
            Err(e) => return self.storage_failed("read a snapshot", &e),
        };
        let Some(stream) = &mut self.stream else {
            return;
        };
        let (items, customers) = (snapshot.items.len(), snapshot.customers);
        let chunks = snapshot_chunks(
            self.router,
            &stream.epoch,
            Uuid::now_v7(),
            snapshot.high_water,
            snapshot.items,
            CHUNK_ITEMS_BYTES,
        );
        stream.sent = snapshot.high_water;
        stream.snapshot = Some(SnapshotInFlight {
            high_water: Some(snapshot.high_water),
            due: Instant::now() + SNAPSHOT_TIMEOUT,
        });
        let count = chunks.len();
        for chunk in chunks {
            if !self
                .shared
                .publish(self.router, SiteTopic::DownSnapshot, encode(&chunk))
                .await
            {
                break;
            }
        }
        tracing::info!(router = %self.router, customers, items, chunks = count,
            high_water = snapshot.high_water, %reason, "snapshot sent");
    }

    /// Sends batches until the window is full or the outbox is drained.
    async fn pump(&mut self) {
        self.retry_at = None;
        loop {
            let Some(stream) = &self.stream else {
                return;
            };
            if stream.snapshot.is_some() || stream.inflight.len() >= WINDOW {
                return;
            }
            let read = self
                .storage
                .read_down(
                    self.router,
                    stream.sent,
                    MAX_BATCH_CHANGES,
                    TARGET_BATCH_BYTES,
                )
                .await;
            let changes = match read {
                Ok(DownRead::Changes(changes)) => changes,
                Ok(DownRead::Gap) => {
                    self.request_snapshot("the outbox no longer holds the agent's position")
                        .await;
                    return;
                }
                Err(e) => return self.storage_failed("read the outbox", &e),
            };
            let Some(stream) = &mut self.stream else {
                return;
            };
            let Some(envelope) = batch(self.router, &stream.epoch, changes) else {
                return;
            };
            let last = envelope.last_seq;
            stream.sent = last;
            stream.inflight.push_back((last, Instant::now()));
            tracing::debug!(router = %self.router, first = envelope.first_seq, last,
                "sending a downstream batch");
            if !self
                .shared
                .publish(self.router, SiteTopic::DownChanges, encode(&envelope))
                .await
            {
                return;
            }
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
        }
        let Some(stream) = &mut self.stream else {
            return;
        };
        if let Some(snapshot) = &stream.snapshot {
            if snapshot.due <= now {
                let reason = if snapshot.high_water.is_some() {
                    "the previous snapshot was not acknowledged"
                } else {
                    "reading the snapshot failed before"
                };
                self.send_snapshot(reason).await;
            }
            return;
        }
        if stream
            .inflight
            .front()
            .is_some_and(|(_, at)| *at + ACK_TIMEOUT <= now)
        {
            tracing::info!(router = %self.router, from = stream.acked + 1,
                "no ack within 10 s; resending");
            stream.sent = stream.acked;
            stream.inflight.clear();
        }
        self.pump().await;
    }
}
