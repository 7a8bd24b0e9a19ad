//! easyisp-central's managed Mosquitto, against real processes: `easyisp-central serve` with
//! its own Mosquitto child on a free loopback port, real MQTT clients (the shared transport
//! crate, TLS with central's CA), enrollment and revocation over HTTP, monitor accounts made
//! by the CLI, and kill -9 of either process.
//!
//! Whether a message did NOT arrive is proven with fences instead of sleeps: the sender
//! follows the forbidden publish with an allowed one that central sees (same connection, so
//! the broker handled the first one already), then central sends a marker to the watcher;
//! whatever the broker would have delivered arrives before that marker.

mod enroll;
mod external;
mod hashes;
mod monitor;
mod process;
mod tls_login;

use crate::central_api::harness::Central;
use easyisp_mqtt::{Endpoint, LinkEvent, QoS, Session};
use easyisp_protocol::Secret;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long a connection attempt or an expected message may take.
pub const WAIT: Duration = Duration::from_secs(15);

/// A connected MQTT client; disconnects when dropped.
pub struct Client {
    pub name: String,
    client: easyisp_mqtt::AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<LinkEvent>,
    cancel: CancellationToken,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Client {
    /// Connects and subscribes; `Err(reason)` when the first attempt is refused or fails.
    pub async fn connect(
        endpoint: &Endpoint,
        name: &str,
        subscriptions: &[&str],
    ) -> Result<Client, String> {
        let session = Session {
            client_id: format!("{name}-{}", uuid::Uuid::now_v7().simple()),
            keep_alive: Duration::from_secs(30),
            will: None,
            subscriptions: subscriptions
                .iter()
                .map(|t| (t.to_string(), QoS::AtLeastOnce))
                .collect(),
        };
        let cancel = CancellationToken::new();
        let link =
            easyisp_mqtt::connect(endpoint, session, cancel.clone()).map_err(|e| e.to_string())?;
        let mut client = Client {
            name: name.to_string(),
            client: link.client,
            events: link.events,
            cancel,
        };
        match tokio::time::timeout(WAIT, client.events.recv()).await {
            Ok(Some(LinkEvent::Connected)) => Ok(client),
            Ok(Some(LinkEvent::Disconnected { reason })) => Err(reason),
            Ok(other) => Err(format!("unexpected first event {other:?}")),
            Err(_) => Err("no answer from the broker".into()),
        }
    }

    pub async fn publish(&self, topic: &str, payload: &str, retain: bool) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.as_bytes().to_vec())
            .await
            .expect("publish queued");
    }

    /// Publishes `probe` on `topic` (one of its own subscriptions) until it comes back: then
    /// the broker has applied every subscription this client asked for before.
    pub async fn ready(&mut self, topic: &str) {
        let probe = format!("probe-{}", uuid::Uuid::now_v7());
        self.publish(topic, &probe, false).await;
        self.messages_until(topic, &probe).await;
    }

    /// Every message received before `payload` arrives on `topic`.
    pub async fn messages_until(&mut self, topic: &str, payload: &str) -> Vec<(String, String)> {
        let deadline = Instant::now() + WAIT;
        let mut before = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(LinkEvent::Message {
                    topic: t,
                    payload: p,
                })) => {
                    let p = String::from_utf8_lossy(&p).into_owned();
                    if t == topic && p == payload {
                        return before;
                    }
                    before.push((t, p));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!(
                    "{}: {payload:?} on {topic} did not arrive; got {before:?}",
                    self.name
                ),
            }
        }
    }

    /// Waits until the broker drops this client.
    pub async fn disconnected(&mut self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(LinkEvent::Disconnected { reason })) => return reason,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("{} was not disconnected", self.name),
            }
        }
    }

    /// Waits for the next successful (re)connection.
    pub async fn reconnected(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(LinkEvent::Connected)) => return,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("{} did not reconnect", self.name),
            }
        }
    }
}

/// The site topic `suffix` of `router`.
pub fn site(router: &str, suffix: &str) -> String {
    format!("easyisp/v1/site/{router}/{suffix}")
}

/// Central's own broker account, as `serve` made it in the data directory.
pub fn central_endpoint(c: &Central) -> Endpoint {
    let data = c.data_dir();
    Endpoint {
        url: easyisp_mqtt::BrokerUrl::new(true, "127.0.0.1", c.mqtt_port),
        username: "easyisp-central".into(),
        password: Secret::new(
            std::fs::read_to_string(data.join("mosquitto/central.secret"))
                .expect("central.secret")
                .trim()
                .to_string(),
        ),
        ca_pem: Some(ca_pem(c)),
    }
}

pub fn ca_pem(c: &Central) -> String {
    std::fs::read_to_string(c.data_dir().join("tls/ca.crt")).expect("ca.crt")
}

/// `POST /api/agents/enroll` without the harness's password check (this answer is the one
/// that must carry a password): `(status, body)`.
pub async fn redeem(c: &Central, token: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/agents/enroll", c.base))
        .json(&json!({ "token": token }))
        .send()
        .await
        .expect("enroll request");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// A router and a fresh enrollment token for it: `(router id, token)`.
pub async fn router_with_token(c: &Central, admin: &str, name: &str) -> (String, String) {
    let r = c
        .post(
            "/api/routers",
            admin,
            json!({"name": name, "ipAddress": "10.0.0.1"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.id();
    let token = new_token(c, admin, &id).await;
    (id, token)
}

pub async fn new_token(c: &Central, admin: &str, router: &str) -> String {
    let t = c
        .post(&format!("/api/routers/{router}/enroll"), admin, json!({}))
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    t.body["token"].as_str().expect("token").to_string()
}

/// Creates a router, enrolls it over HTTP and returns its id and broker endpoint.
pub async fn enrolled_agent(c: &Central, admin: &str, name: &str) -> (String, Endpoint) {
    let (id, token) = router_with_token(c, admin, name).await;
    let (status, body) = redeem(c, &token).await;
    assert_eq!(status, 200, "{body}");
    (id, endpoint_of(&body))
}

pub fn endpoint_of(answer: &Value) -> Endpoint {
    Endpoint {
        url: answer["mqtt"]["url"]
            .as_str()
            .expect("mqtt.url")
            .parse()
            .expect("a broker URL"),
        username: answer["mqtt"]["username"]
            .as_str()
            .expect("username")
            .into(),
        password: Secret::new(
            answer["mqtt"]["password"]
                .as_str()
                .expect("password")
                .into(),
        ),
        ca_pem: answer["caCert"].as_str().map(str::to_string),
    }
}

/// Polls `condition` until it holds or `WAIT` passes.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
