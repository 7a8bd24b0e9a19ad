//! A real `easyisp-central serve` on a per-test Mosquitto (`--broker mqtt://...`), and a test
//! "agent": an MQTT client that speaks docs/sync.md by hand (births, acks, upstream batches,
//! command results), so each test controls exactly what the agent says and when.

use crate::central_api::harness::Central;
use easyisp_mqtt::{AsyncClient, BrokerUrl, Endpoint, Link, LinkEvent, QoS, Session, Will};
use easyisp_protocol::Secret;
use easyisp_protocol::envelope::{
    Ack, ChangeBatch, ChangeBody, PROTOCOL_VERSION, SnapshotChunk, Status, decode, encode,
};
use easyisp_protocol::topics::{self, SiteTopic};
use easyisp_tests::mosquitto::Mosquitto;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a test waits for something central should do at once.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct Env {
    pub central: Central,
    pub broker: Mosquitto,
    pub admin: String,
}

impl Env {
    pub async fn start() -> Env {
        let broker = Mosquitto::start().expect("mosquitto starts");
        let url = format!("mqtt://127.0.0.1:{}", broker.port());
        let central = Central::start_with_env(
            &["--broker", &url],
            // The test broker allows anonymous clients; central still needs a password.
            &[("EASYISP_BROKER_PASSWORD", "anonymous-broker")],
        )
        .await;
        let admin = central.admin().await;
        Env {
            central,
            broker,
            admin,
        }
    }

    pub fn tenant(&self) -> Uuid {
        Uuid::parse_str(&self.central.tenant).expect("tenant id")
    }

    pub async fn router(&self, name: &str) -> Uuid {
        let r = self
            .central
            .post(
                "/api/routers",
                &self.admin,
                json!({"name": name, "ipAddress": "10.0.0.1"}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.body);
        Uuid::parse_str(&r.id()).expect("router id")
    }

    pub async fn customer(&self, username: &str, router: Option<Uuid>) -> Uuid {
        let extra = match router {
            Some(router) => json!({"nasId": router}),
            None => json!({}),
        };
        let r = self.central.customer(&self.admin, username, extra).await;
        assert_eq!(r.status, 201, "{}", r.body);
        Uuid::parse_str(&r.id()).expect("customer id")
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self.central.get(path, &self.admin).await;
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        r.body
    }

    /// Rows of the router's downstream outbox, read from central's database.
    pub fn outbox_rows(&self, router: Uuid) -> i64 {
        let db = rusqlite::Connection::open_with_flags(
            self.central.data_dir().join("central.sqlite3"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open central's database");
        db.busy_timeout(Duration::from_secs(10)).expect("timeout");
        db.query_row(
            "SELECT COUNT(*) FROM sync_down WHERE router_id = ?1",
            [router.to_string()],
            |r| r.get(0),
        )
        .expect("count outbox rows")
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint {
            url: BrokerUrl::new(false, "127.0.0.1", self.broker.port()),
            username: "test".into(),
            password: Secret::new("test".into()),
            ca_pem: None,
        }
    }

    /// Publishes one message as some other client (a late Will, a forged status).
    pub async fn publish_as_other(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let mut other = Raw::connect(&self.endpoint(), "other", Vec::new(), None).await;
        other
            .client
            .publish(topic, QoS::AtLeastOnce, retain, payload)
            .await
            .expect("publish");
        // The broker has it once a round trip on the same connection is done.
        other.round_trip().await;
    }
}

/// Polls `check` until it holds or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A connected MQTT client with its event stream.
struct Raw {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Events that arrived while waiting for a probe, in order.
    held: VecDeque<LinkEvent>,
    link: tokio::task::JoinHandle<()>,
    cancel: CancellationToken,
    probe: String,
}

impl Raw {
    async fn connect(
        endpoint: &Endpoint,
        client_id: &str,
        mut subscriptions: Vec<(String, QoS)>,
        will: Option<Will>,
    ) -> Raw {
        let probe = format!("test/probe/{}", Uuid::now_v7());
        subscriptions.push((probe.clone(), QoS::AtLeastOnce));
        let session = Session {
            client_id: client_id.to_string(),
            keep_alive: Duration::from_secs(30),
            will,
            subscriptions,
        };
        let cancel = CancellationToken::new();
        let Link {
            client,
            events,
            task,
        } = easyisp_mqtt::connect(endpoint, session, cancel.clone()).expect("mqtt options");
        let mut raw = Raw {
            client,
            events,
            held: VecDeque::new(),
            link: task,
            cancel,
            probe,
        };
        let connected = tokio::time::timeout(WAIT, async {
            while let Some(event) = raw.events.recv().await {
                if event == LinkEvent::Connected {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(connected, Ok(true), "test client connects");
        // Subscriptions are active once our own probe comes back.
        raw.round_trip().await;
        raw
    }

    async fn recv(&mut self, deadline: tokio::time::Instant) -> Option<LinkEvent> {
        if let Some(event) = self.held.pop_front() {
            return Some(event);
        }
        tokio::time::timeout_at(deadline, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Publishes on the probe topic and waits for it: everything sent before is at the broker.
    async fn round_trip(&mut self) {
        let marker = Uuid::now_v7().to_string();
        self.client
            .publish(self.probe.clone(), QoS::AtLeastOnce, false, marker.clone())
            .await
            .expect("publish probe");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .expect("probe round trip within the wait")
                .expect("connection task alive");
            match event {
                LinkEvent::Message { topic, payload } if topic == self.probe => {
                    if payload == marker.as_bytes() {
                        return;
                    }
                }
                other => self.held.push_back(other),
            }
        }
    }
}

/// A hand-driven agent for one router.
pub struct Agent {
    pub router: Uuid,
    pub epoch: String,
    pub session: u64,
    raw: Raw,
    pending: VecDeque<(SiteTopic, Vec<u8>)>,
}

pub fn status(
    router: Uuid,
    online: bool,
    session: u64,
    epoch: Option<&str>,
    applied: Option<u64>,
) -> Status {
    Status {
        v: PROTOCOL_VERSION,
        router,
        online,
        session,
        agent_version: online.then(|| "test-agent".to_string()),
        started_at: online.then(chrono::Utc::now),
        epoch: epoch.map(str::to_string),
        applied_through: applied,
    }
}

impl Agent {
    /// Connects as `router`'s agent (Will: offline with `session`) and publishes its birth.
    pub async fn connect(
        env: &Env,
        router: Uuid,
        epoch: &str,
        session: u64,
        applied: u64,
    ) -> Agent {
        let will = Will {
            topic: SiteTopic::Status.for_router(router),
            payload: encode(&status(router, false, session, None, None)),
            retain: true,
        };
        let raw = Raw::connect(
            &env.endpoint(),
            &format!("easyisp-agent-{router}"),
            vec![(topics::downstream_filter(router), QoS::AtLeastOnce)],
            Some(will),
        )
        .await;
        let agent = Agent {
            router,
            epoch: epoch.to_string(),
            session,
            raw,
            pending: VecDeque::new(),
        };
        agent
            .publish_retained(
                SiteTopic::Status,
                &status(router, true, session, Some(epoch), Some(applied)),
            )
            .await;
        agent
    }

    pub async fn publish<T: Serialize>(&self, topic: SiteTopic, envelope: &T) {
        self.raw
            .client
            .publish(
                topic.for_router(self.router),
                QoS::AtLeastOnce,
                false,
                encode(envelope),
            )
            .await
            .expect("publish");
    }

    async fn publish_retained<T: Serialize>(&self, topic: SiteTopic, envelope: &T) {
        self.raw
            .client
            .publish(
                topic.for_router(self.router),
                QoS::AtLeastOnce,
                true,
                encode(envelope),
            )
            .await
            .expect("publish");
    }

    /// The next message central sent on `topic`, decoded; other topics wait their turn.
    pub async fn next<T: DeserializeOwned>(&mut self, topic: SiteTopic) -> T {
        self.try_next(topic, WAIT)
            .await
            .unwrap_or_else(|| panic!("nothing on {} within {WAIT:?}", topic.suffix()))
    }

    pub async fn try_next<T: DeserializeOwned>(
        &mut self,
        topic: SiteTopic,
        within: Duration,
    ) -> Option<T> {
        if let Some(i) = self.pending.iter().position(|(t, _)| *t == topic) {
            let (_, payload) = self.pending.remove(i).expect("position is valid");
            return Some(decode(&payload).expect("central's envelope decodes"));
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let event = self.raw.recv(deadline).await?;
            let LinkEvent::Message {
                topic: name,
                payload,
            } = event
            else {
                continue;
            };
            let Some((router, kind)) = topics::parse(&name) else {
                continue;
            };
            assert_eq!(router, self.router, "only our own subtree");
            if kind == topic {
                return Some(decode(&payload).expect("central's envelope decodes"));
            }
            self.pending.push_back((kind, payload));
        }
    }

    /// Collects a whole snapshot (all `count` chunks of one snapshot id).
    pub async fn snapshot(&mut self) -> (u64, Vec<ChangeBody>) {
        let first: SnapshotChunk = self.next(SiteTopic::DownSnapshot).await;
        let mut chunks = vec![first];
        while chunks.len() < chunks[0].count as usize {
            let chunk: SnapshotChunk = self.next(SiteTopic::DownSnapshot).await;
            assert_eq!(chunk.snapshot_id, chunks[0].snapshot_id);
            chunks.push(chunk);
        }
        assert!(chunks.iter().all(|c| c.epoch == self.epoch));
        let high_water = chunks[0].high_water_seq;
        (
            high_water,
            chunks.into_iter().flat_map(|c| c.items).collect(),
        )
    }

    /// The next downstream batch.
    pub async fn batch(&mut self) -> ChangeBatch {
        let batch: ChangeBatch = self.next(SiteTopic::DownChanges).await;
        assert_eq!(
            (batch.router, batch.epoch.as_str()),
            (self.router, self.epoch.as_str())
        );
        batch
    }

    /// Acknowledges the downstream stream through `through`.
    pub async fn ack(&self, through: u64, resend_from: Option<u64>) {
        self.publish(
            SiteTopic::UpAck,
            &Ack {
                v: PROTOCOL_VERSION,
                router: self.router,
                epoch: self.epoch.clone(),
                acked_through: through,
                resend_from,
                rejected: Vec::new(),
                must_resync: false,
            },
        )
        .await;
    }

    /// Births, takes the snapshot that answers a first birth and acknowledges it.
    pub async fn sync_up(&mut self) -> Vec<ChangeBody> {
        let ack: Ack = self.next(SiteTopic::DownAck).await;
        assert_eq!(ack.epoch, self.epoch);
        let (high_water, items) = self.snapshot().await;
        self.ack(high_water, None).await;
        items
    }

    /// Drops the connection without DISCONNECT, as a crash would: the broker sends the Will.
    pub fn crash(self) {
        self.raw.link.abort();
    }

    /// Disconnects cleanly after publishing the offline status, as a shutdown does.
    pub async fn shutdown(self) {
        self.publish_retained(
            SiteTopic::Status,
            &status(self.router, false, self.session, None, None),
        )
        .await;
        self.raw.cancel.cancel();
        let _ = self.raw.link.await;
    }
}

/// The usernames of the customers among snapshot or batch items.
pub fn usernames<'a>(items: impl IntoIterator<Item = &'a ChangeBody>) -> Vec<String> {
    items
        .into_iter()
        .filter_map(|item| match item {
            ChangeBody::Customer(c) => Some(c.username().to_string()),
            _ => None,
        })
        .collect()
}
