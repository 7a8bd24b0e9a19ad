//! The agent's side of sync (docs/sync.md) against a real Mosquitto (with the production ACL:
//! username = router id, confined to its subtree), the RouterOS simulator and the real
//! `easyisp-agent run`. Central's part is played by the test with a raw MQTT client speaking
//! the protocol's envelopes, so each rule of the agent's side is checked on its own.

mod commands;
mod downstream;
mod enroll;
mod presence;
mod upstream;

use chrono::Utc;
use easyisp_agent::config::{RawAgent, RawCentral, RawConfig, RawRouter};
use easyisp_agent::replica::{Replica, store};
use easyisp_mqtt::{AsyncClient, BrokerUrl, Endpoint, LinkEvent, QoS, Session};
use easyisp_protocol::customer::{ConnectionType, CustomerRecord, SyncedSecret};
use easyisp_protocol::envelope::{self, Change, ChangeBatch, ChangeBody, PROTOCOL_VERSION, Status};
use easyisp_protocol::merge::Lww;
use easyisp_protocol::package::{PackageRecord, Speed};
use easyisp_protocol::topics::{AGENT_ACL_PATTERN, SiteTopic, parse};
use easyisp_protocol::{Hlc, Money, NodeId, Secret};
use easyisp_tests::binaries::workspace_bin;
use easyisp_tests::mosquitto::{BrokerOptions, Mosquitto};
use easyisp_tests::sim_harness::{SimOptions, SimProcess, install_crypto_provider};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub(super) const TENANT: Uuid = Uuid::from_u128(0x7e57);
pub(super) const PACKAGE: Uuid = Uuid::from_u128(0x9a);
const CENTRAL_USER: &str = "easyisp-central";
const CENTRAL_PASSWORD: &str = "central-broker-pw";
const AGENT_PASSWORD: &str = "agent-broker-pw";
/// Long enough for a debug build on a loaded machine; conditions are polled, never slept on.
pub(super) const WAIT: Duration = Duration::from_secs(15);

/// A broker, a simulated router, the agent's config and process, and "central".
pub(super) struct Site {
    pub broker: Mosquitto,
    pub sim: SimProcess,
    pub router: Uuid,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub central: Central,
    agent: Option<Child>,
}

impl Site {
    /// Everything up, the agent running and its online status seen.
    pub async fn start() -> Site {
        install_crypto_provider();
        let router = Uuid::now_v7();
        let broker = Mosquitto::start_with(BrokerOptions {
            users: vec![
                (CENTRAL_USER.into(), CENTRAL_PASSWORD.into()),
                (router.to_string(), AGENT_PASSWORD.into()),
            ],
            acl: vec![
                AGENT_ACL_PATTERN.to_string(),
                format!("user {CENTRAL_USER}"),
                "topic readwrite easyisp/v1/site/#".to_string(),
            ],
        })
        .expect("broker starts");
        let sim = SimProcess::start(SimOptions::default())
            .await
            .expect("simulator starts");
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("agent.toml");
        RawConfig {
            agent: RawAgent {
                router_id: router.to_string(),
                tenant_id: TENANT.to_string(),
                data_dir: Some(dir.path().join("data")),
                reconcile_interval_secs: Some(60),
                poll_interval_secs: Some(1),
                mass_cutoff_percent: None,
                mass_cutoff_min: None,
                assume_clock_synchronised: Some(true),
                telemetry_interval_secs: Some(1),
                metrics_listen: None,
                metrics_allow_remote: None,
            },
            router: RawRouter {
                url: sim.router_url("rest+http"),
                password: sim.options.password.clone(),
                timeout_secs: Some(10),
                known_hosts: None,
            },
            central: Some(RawCentral {
                url: "http://127.0.0.1:9".into(),
                mqtt_url: Some(format!("mqtt://127.0.0.1:{}", broker.port())),
                mqtt_password: Some(AGENT_PASSWORD.into()),
                ca_pem: None,
            }),
        }
        .write(&config)
        .expect("config written");
        let central = Central::connect(&broker, router).await;
        let mut site = Site {
            broker,
            sim,
            router,
            dir,
            config,
            central,
            agent: None,
        };
        site.spawn_agent();
        site
    }

    pub fn spawn_agent(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let child = Command::new(workspace_bin("easyisp-agent"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info,easyisp_agent=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("agent starts");
        self.agent = Some(child);
    }

    /// SIGTERM, and wait for the agent to exit.
    pub async fn stop_agent(&mut self) {
        let mut child = self.agent.take().expect("agent running");
        let pid = child.id().expect("agent pid");
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(term.success(), "SIGTERM sent");
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .expect("agent stops within the deadline")
            .expect("agent exit status");
        assert!(status.success(), "clean exit: {status}\n{}", self.log());
    }

    /// kill -9.
    pub async fn kill_agent(&mut self) {
        let mut child = self.agent.take().expect("agent running");
        child.start_kill().expect("SIGKILL sent");
        let _ = child.wait().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// The agent's replica, opened beside the running agent (reads only).
    pub fn replica(&self) -> Replica {
        Replica::open(&self.dir.path().join("data").join("replica.db")).expect("replica opens")
    }

    pub async fn outbox_depth(&self) -> u64 {
        self.replica()
            .read(store::outbox_depth)
            .await
            .expect("outbox readable")
    }

    /// The agent's online status (retained), waiting for one with a session above `after`.
    pub async fn online(&self, after: u64) -> Status {
        self.central
            .wait::<Status>(SiteTopic::Status, |s| s.online && s.session > after)
            .await
            .unwrap_or_else(|| {
                panic!(
                    "agent online after session {after}\nagent log:\n{}\nbroker log:\n{}",
                    self.log(),
                    self.broker.log()
                )
            })
    }

    pub async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: not within {WAIT:?}\nagent log:\n{}", self.log());
    }

    pub async fn secret(&self, name: &str) -> Option<serde_json::Value> {
        self.sim.control.secret(name).await.unwrap_or(None)
    }
}

/// Every message the agent published, with its topic kind, in arrival order.
type Seen = Arc<Mutex<Vec<(SiteTopic, Vec<u8>)>>>;

/// Central's side, played by the test: publishes envelopes and records everything the agent
/// publishes on its subtree.
pub(super) struct Central {
    client: AsyncClient,
    router: Uuid,
    seen: Seen,
    _stop: tokio_util::sync::DropGuard,
}

impl Central {
    async fn connect(broker: &Mosquitto, router: Uuid) -> Central {
        let endpoint = Endpoint {
            url: BrokerUrl::new(false, "127.0.0.1", broker.port()),
            username: CENTRAL_USER.into(),
            password: Secret::new(CENTRAL_PASSWORD.into()),
            ca_pem: None,
        };
        let stop = CancellationToken::new();
        let session = Session {
            client_id: format!("easyisp-central-{}", Uuid::now_v7().simple()),
            keep_alive: Duration::from_secs(30),
            will: None,
            subscriptions: vec![(format!("easyisp/v1/site/{router}/#"), QoS::AtLeastOnce)],
        };
        let mut link = easyisp_mqtt::connect(&endpoint, session, stop.clone()).expect("client");
        let connected = tokio::time::timeout(WAIT, async {
            while let Some(event) = link.events.recv().await {
                if event == LinkEvent::Connected {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(connected, Ok(true), "central's test client connects");
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let mut events = link.events;
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                if let LinkEvent::Message { topic, payload } = event
                    && let Some((_, kind)) = parse(&topic)
                {
                    sink.lock().expect("lock").push((kind, payload));
                }
            }
        });
        // Give the SUBSCRIBE a round trip before the agent starts publishing: a ping through
        // our own subscription proves it is active.
        let probe = SiteTopic::DownCmd.for_router(router);
        let central = Central {
            client: link.client,
            router,
            seen,
            _stop: stop.drop_guard(),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            central
                .client
                .publish(probe.clone(), QoS::AtLeastOnce, false, b"ping".to_vec())
                .await
                .expect("ping queued");
            tokio::time::sleep(Duration::from_millis(50)).await;
            if !central.raw(SiteTopic::DownCmd).is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "subscription active"
            );
        }
        central
    }

    pub async fn publish<T: Serialize>(&self, kind: SiteTopic, body: &T) {
        self.client
            .publish(
                kind.for_router(self.router),
                QoS::AtLeastOnce,
                false,
                envelope::encode(body),
            )
            .await
            .expect("publish queued");
    }

    fn raw(&self, kind: SiteTopic) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Every message of `kind` so far that parses as `T`.
    pub fn all<T: DeserializeOwned>(&self, kind: SiteTopic) -> Vec<T> {
        self.raw(kind)
            .iter()
            .filter_map(|p| serde_json::from_slice(p).ok())
            .collect()
    }

    /// The first message of `kind` (so far or arriving within [`WAIT`]) matching `pred`.
    pub async fn wait<T: DeserializeOwned>(
        &self,
        kind: SiteTopic,
        pred: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(found) = self.all::<T>(kind).into_iter().find(|m| pred(m)) {
                return Some(found);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ---- records as central sends them -----------------------------------------------------

pub(super) fn stamp() -> Hlc {
    Hlc::new(Utc::now().timestamp_millis() as u64, 0, NodeId(0xce))
}

pub(super) fn package() -> ChangeBody {
    let mut p = PackageRecord::empty(PACKAGE, TENANT);
    let s = stamp();
    p.name = Some(Lww::new("Home 10".into(), s));
    p.price = Some(Lww::new(Money::from_minor(200_000), s));
    p.download_speed = Some(Lww::new(Speed::from_mbps(10), s));
    p.upload_speed = Some(Lww::new(Speed::from_mbps(5), s));
    p.validity_days = Some(Lww::new(30, s));
    ChangeBody::Package(Box::new(p))
}

pub(super) fn customer(id: Uuid, name: &str, router: Uuid) -> CustomerRecord {
    let mut c = CustomerRecord::empty(id, TENANT);
    let s = stamp();
    c.username = Some(Lww::new(name.into(), s));
    c.name = Some(Lww::new(name.into(), s));
    c.password = Some(Lww::new(SyncedSecret::new("Zebra-Lamp-42"), s));
    c.connection_type = Some(Lww::new(ConnectionType::Pppoe, s));
    c.package_id = Some(Lww::new(Some(PACKAGE), s));
    c.router_id = Some(Lww::new(Some(router), s));
    c.expires_at = Some(Lww::new(Some(Utc::now() + chrono::Duration::days(30)), s));
    c.suspended = Some(Lww::new(false, s));
    c.disabled = Some(Lww::new(false, s));
    c
}

pub(super) fn body(c: CustomerRecord) -> ChangeBody {
    ChangeBody::Customer(Box::new(c))
}

pub(super) fn batch(router: Uuid, epoch: &str, first: u64, bodies: Vec<ChangeBody>) -> ChangeBatch {
    let changes: Vec<Change> = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| Change {
            seq: first + i as u64,
            id: Uuid::now_v7(),
            body,
        })
        .collect();
    ChangeBatch {
        v: PROTOCOL_VERSION,
        router,
        epoch: epoch.to_string(),
        first_seq: first,
        last_seq: first + changes.len() as u64 - 1,
        changes,
    }
}
