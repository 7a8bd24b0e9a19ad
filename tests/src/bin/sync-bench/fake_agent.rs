//! An in-process stand-in for `easyisp-agent`'s sync side, enough to load central and the
//! broker as a real agent does (docs/sync.md): it logs in with its router's broker account,
//! publishes a retained online status with its replica epoch and `appliedThrough` on every
//! connection (its Last Will and a clean stop say offline), stages snapshot chunks and acks
//! the high-water seq once all have arrived, and applies change batches by the cursor rule
//! (duplicates acked again, a gap answered with `resendFrom`), acking cumulatively. It keeps
//! no replica and touches no router: what it measures is central and the broker.

use anyhow::{Result, bail};
use easyisp_mqtt::{AsyncClient, Endpoint, LinkEvent, QoS, Session, Will};
use easyisp_protocol::envelope::{self, Ack, ChangeBatch, PROTOCOL_VERSION, SnapshotChunk, Status};
use easyisp_protocol::topics::{self, SiteTopic};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Totals over every fake agent.
#[derive(Default)]
pub struct Counters {
    /// Changes applied for the first time (duplicates not counted) and acked.
    pub changes: AtomicU64,
    pub batches: AtomicU64,
    pub duplicate_batches: AtomicU64,
    pub gaps: AtomicU64,
    /// Snapshots fully received and acked.
    pub snapshots: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// One router's agent: its broker account and its replica position, kept across connections.
pub struct FakeAgent {
    pub router: Uuid,
    endpoint: Endpoint,
    epoch: String,
    applied: u64,
    session: u64,
    /// Snapshot id → (chunk count, indices received, high-water seq).
    staged: HashMap<Uuid, (u32, HashSet<u32>, u64)>,
}

impl FakeAgent {
    pub fn new(router: Uuid, endpoint: Endpoint) -> FakeAgent {
        FakeAgent {
            router,
            endpoint,
            epoch: Uuid::new_v4().to_string(),
            applied: 0,
            session: 0,
            staged: HashMap::new(),
        }
    }

    fn status(&self, online: bool) -> Status {
        Status {
            v: PROTOCOL_VERSION,
            router: self.router,
            online,
            session: self.session,
            agent_version: online.then(|| "sync-bench".to_string()),
            started_at: online.then(chrono::Utc::now),
            epoch: online.then(|| self.epoch.clone()),
            applied_through: online.then_some(self.applied),
        }
    }

    /// One connection, until `stop`: then an offline status and a clean disconnect. Returns
    /// the agent with its position, to connect again later.
    pub async fn run(
        mut self,
        counters: Arc<Counters>,
        stop: CancellationToken,
    ) -> Result<FakeAgent> {
        self.session += 1;
        let will = Will {
            topic: SiteTopic::Status.for_router(self.router),
            payload: envelope::encode(&self.status(false)),
            retain: true,
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
        let session = Session {
            client_id: format!("easyisp-agent-{}", self.router),
            keep_alive: Duration::from_secs(30),
            will: Some(will),
            subscriptions,
        };
        let cancel = CancellationToken::new();
        let mut link = easyisp_mqtt::connect(&self.endpoint, session, cancel.clone())?;
        let client = link.client.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                event = link.events.recv() => match event {
                    Some(LinkEvent::Connected) => {
                        let status = self.status(true);
                        self.publish(&client, SiteTopic::Status, &status, true).await;
                    }
                    Some(LinkEvent::Disconnected { .. }) => {}
                    Some(LinkEvent::Message { topic, payload }) => {
                        self.message(&client, &counters, &topic, &payload).await;
                    }
                    None => bail!("the MQTT connection task of router {} ended", self.router),
                },
            }
        }
        let offline = self.status(false);
        self.publish(&client, SiteTopic::Status, &offline, true)
            .await;
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(3), link.task).await;
        Ok(self)
    }

    async fn publish<T: serde::Serialize>(
        &self,
        client: &AsyncClient,
        topic: SiteTopic,
        body: &T,
        retain: bool,
    ) {
        // Awaiting is safe here: the transport's own task polls the event loop.
        let _ = client
            .publish(
                topic.for_router(self.router),
                QoS::AtLeastOnce,
                retain,
                envelope::encode(body),
            )
            .await;
    }

    async fn ack(&self, client: &AsyncClient, resend_from: Option<u64>) {
        let ack = Ack {
            v: PROTOCOL_VERSION,
            router: self.router,
            epoch: self.epoch.clone(),
            acked_through: self.applied,
            resend_from,
            rejected: Vec::new(),
            must_resync: false,
        };
        self.publish(client, SiteTopic::UpAck, &ack, false).await;
    }

    async fn message(
        &mut self,
        client: &AsyncClient,
        counters: &Counters,
        topic: &str,
        payload: &[u8],
    ) {
        let Some((router, kind)) = topics::parse(topic) else {
            return;
        };
        if router != self.router {
            return;
        }
        match kind {
            SiteTopic::DownChanges => {
                let Ok(batch) = envelope::decode::<ChangeBatch>(payload) else {
                    return;
                };
                if batch.epoch != self.epoch || batch.first_seq == 0 {
                    return;
                }
                if batch.first_seq > self.applied + 1 {
                    counters.gaps.fetch_add(1, Ordering::Relaxed);
                    let from = self.applied + 1;
                    self.ack(client, Some(from)).await;
                    return;
                }
                if batch.last_seq <= self.applied {
                    counters.duplicate_batches.fetch_add(1, Ordering::Relaxed);
                } else {
                    let new = batch.last_seq - self.applied;
                    self.applied = batch.last_seq;
                    counters.batches.fetch_add(1, Ordering::Relaxed);
                    counters.changes.fetch_add(new, Ordering::Relaxed);
                }
                self.ack(client, None).await;
            }
            SiteTopic::DownSnapshot => {
                let Ok(chunk) = envelope::decode::<SnapshotChunk>(payload) else {
                    return;
                };
                if chunk.epoch != self.epoch {
                    return;
                }
                let entry = self.staged.entry(chunk.snapshot_id).or_insert((
                    chunk.count,
                    HashSet::new(),
                    chunk.high_water_seq,
                ));
                entry.1.insert(chunk.index);
                if entry.1.len() as u32 >= entry.0 {
                    self.applied = entry.2;
                    self.staged.clear();
                    counters.snapshots.fetch_add(1, Ordering::Relaxed);
                    self.ack(client, None).await;
                }
            }
            // Upstream acks (this agent sends nothing upstream) and commands: nothing to do.
            _ => {}
        }
    }
}
