//! EasyISP's MQTT transport, shared by central and the agent.
//!
//! rumqttc is only a transport here (see DESIGN.md "Sync protocol"): nothing it holds in
//! memory is trusted to survive a reconnect, so durability lives in each side's SQLite outbox
//! and acknowledgements are our own envelopes. What this crate adds to rumqttc:
//!
//! - [`BrokerUrl`]: `mqtt://host[:port]` (plain, default port 1883) or `mqtts://host[:port]`
//!   (TLS, default port 8883), parsed with messages that say what is wrong.
//! - [`Endpoint`]: URL, username, password (a [`Secret`], never printed) and the CA
//!   certificate that signs the broker's certificate (central generates it; see
//!   docs/sync.md). TLS uses rustls with the ring provider and trusts only that CA.
//! - [`connect`]: one task that drives rumqttc's event loop (the pitfalls in its FAQ: the loop
//!   must be polled all the time, and publishing from the polling task can deadlock), with
//!   capped exponential backoff and jitter between failed connection attempts (rumqttc has
//!   none), re-subscribing after every connection, and handing incoming messages and
//!   connection changes to the caller over an unbounded channel so the loop never waits on the
//!   caller. TCP_NODELAY is on (a QoS 1 round trip costs 0.2 ms instead of ~90 ms).

use easyisp_protocol::Secret;
use rumqttc::{ConnectReturnCode, Event, EventLoop, LastWill, MqttOptions, Packet, Transport};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use rumqttc::{AsyncClient, ClientError, QoS};

/// The largest packet either side sends or accepts; the broker is configured to match.
pub const MAX_PACKET_BYTES: usize = easyisp_protocol::envelope::MAX_PACKET_BYTES;
/// Requests (publishes, subscribes) queued towards the event loop before `publish` waits.
const REQUEST_CAPACITY: usize = 1024;
/// The first and the largest pause between failed connection attempts.
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum MqttError {
    #[error("broker URL {url:?}: {reason} (expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT])")]
    Url { url: String, reason: String },
    #[error("the broker's CA certificate is not usable: {0}")]
    Ca(String),
    #[error("{url} uses TLS but no CA certificate was given to verify the broker")]
    MissingCa { url: String },
}

/// Where the broker listens and whether the connection uses TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl BrokerUrl {
    /// `mqtts://` when `tls`, else `mqtt://`.
    pub fn new(tls: bool, host: impl Into<String>, port: u16) -> BrokerUrl {
        BrokerUrl {
            tls,
            host: host.into(),
            port,
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = MqttError;

    fn from_str(text: &str) -> Result<BrokerUrl, MqttError> {
        let fail = |reason: &str| MqttError::Url {
            url: text.to_string(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(rest) = text.strip_prefix("mqtts://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("mqtt://") {
            (false, rest)
        } else {
            return Err(fail("unknown scheme"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(fail(
                "only a host and a port are allowed (credentials are given separately)",
            ));
        }
        let default_port = if tls { 8883 } else { 1883 };
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| fail("an IPv6 address needs a closing ]"))?;
            match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None if after.is_empty() => (host, None),
                None => return Err(fail("unexpected text after the IPv6 address")),
            }
        } else {
            match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            }
        };
        if host.is_empty() {
            return Err(fail("the host is missing"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| fail("the port must be a number from 1 to 65535"))?,
            None => default_port,
        };
        Ok(BrokerUrl::new(tls, host, port))
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Everything needed to reach and log in to a broker.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: BrokerUrl,
    pub username: String,
    pub password: Secret<String>,
    /// PEM of the CA that signs the broker's certificate; required for `mqtts://`.
    pub ca_pem: Option<String>,
}

/// A message the broker publishes if this client vanishes without a clean disconnect.
#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
}

/// One client's connection settings.
#[derive(Debug, Clone)]
pub struct Session {
    /// Fixed per program instance (the router id for an agent), so a second copy of the
    /// same agent takes the connection over instead of running beside it.
    pub client_id: String,
    pub keep_alive: Duration,
    pub will: Option<Will>,
    /// Subscribed (again) after every successful connection.
    pub subscriptions: Vec<(String, QoS)>,
}

/// What the connection task reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The broker accepted the connection and the subscriptions were requested.
    Connected,
    /// The connection failed or dropped; the task retries after a backoff.
    Disconnected { reason: String },
    /// A message on one of the subscriptions.
    Message { topic: String, payload: Vec<u8> },
}

/// A running connection: publish with `client`, read `events`. Dropping the cancel token
/// given to [`connect`] disconnects cleanly (the Will is not sent then).
pub struct Link {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<LinkEvent>,
    pub task: JoinHandle<()>,
}

/// Starts the connection task. It connects, reconnects with backoff, and stops when `cancel`
/// fires (sending DISCONNECT first, so the broker drops the Will).
pub fn connect(
    endpoint: &Endpoint,
    session: Session,
    cancel: CancellationToken,
) -> Result<Link, MqttError> {
    let options = options(endpoint, &session)?;
    let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CAPACITY);
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(10);
    eventloop.set_network_options(network);
    let (sender, events) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(
        eventloop,
        client.clone(),
        session.subscriptions,
        sender,
        cancel,
        endpoint.url.to_string(),
    ));
    Ok(Link {
        client,
        events,
        task,
    })
}

fn options(endpoint: &Endpoint, session: &Session) -> Result<MqttOptions, MqttError> {
    let mut options = MqttOptions::new(
        session.client_id.clone(),
        endpoint.url.host.clone(),
        endpoint.url.port,
    );
    options
        .set_keep_alive(session.keep_alive.max(Duration::from_secs(5)))
        .set_clean_session(true)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES)
        .set_inflight(100)
        .set_credentials(
            endpoint.username.clone(),
            endpoint.password.expose().clone(),
        );
    if let Some(will) = &session.will {
        options.set_last_will(LastWill::new(
            will.topic.clone(),
            will.payload.clone(),
            QoS::AtLeastOnce,
            will.retain,
        ));
    }
    if endpoint.url.tls {
        let pem = endpoint
            .ca_pem
            .as_deref()
            .ok_or_else(|| MqttError::MissingCa {
                url: endpoint.url.to_string(),
            })?;
        options.set_transport(Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(tls_config(pem)?)),
        ));
    }
    Ok(options)
}

/// A rustls client configuration that trusts only the certificates in `ca_pem`.
pub fn tls_config(ca_pem: &str) -> Result<rustls::ClientConfig, MqttError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| MqttError::Ca(e.to_string()))?;
        roots.add(cert).map_err(|e| MqttError::Ca(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(MqttError::Ca("it holds no PEM certificate".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| MqttError::Ca(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

async fn drive(
    mut eventloop: EventLoop,
    client: AsyncClient,
    subscriptions: Vec<(String, QoS)>,
    events: mpsc::UnboundedSender<LinkEvent>,
    cancel: CancellationToken,
    url: String,
) {
    let mut failures: u32 = 0;
    let mut connected = false;
    loop {
        let polled = tokio::select! {
            _ = cancel.cancelled() => break,
            polled = eventloop.poll() => polled,
        };
        match polled {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                if ack.code != ConnectReturnCode::Success {
                    // Mosquitto closes the connection after a refusal; the next poll fails
                    // and takes the backoff path.
                    tracing::warn!(broker = %url, code = ?ack.code, "the broker refused the connection");
                    continue;
                }
                failures = 0;
                connected = true;
                tracing::info!(broker = %url, "connected to the broker");
                for (topic, qos) in &subscriptions {
                    if let Err(e) = client.try_subscribe(topic.clone(), *qos) {
                        tracing::warn!(%topic, error = %e, "could not queue a subscription");
                    }
                }
                if events.send(LinkEvent::Connected).is_err() {
                    break;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let message = LinkEvent::Message {
                    topic: publish.topic,
                    payload: publish.payload.to_vec(),
                };
                if events.send(message).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                let reason = e.to_string();
                if connected || failures == 0 {
                    tracing::warn!(broker = %url, error = %reason, "broker connection lost; retrying");
                } else {
                    tracing::debug!(broker = %url, error = %reason, failures, "broker still unreachable");
                }
                if connected || failures == 0 {
                    let _ = events.send(LinkEvent::Disconnected { reason });
                }
                connected = false;
                let pause = backoff(failures);
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    if connected {
        // A clean DISCONNECT: give the event loop a moment to write it out.
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
    }
}

/// `BACKOFF_FIRST * 2^failures`, capped at `BACKOFF_MAX`, then scaled by a random factor in
/// [0.5, 1.0] so a fleet of agents does not reconnect in lockstep after a broker restart.
pub fn backoff(failures: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << failures.min(16))
        .min(BACKOFF_MAX);
    let mut byte = [0u8; 1];
    let random = getrandom::fill(&mut byte).map(|()| byte[0]).unwrap_or(128);
    base.mul_f64(0.5 + f64::from(random) / 510.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_defaults_and_clear_errors() {
        let url: BrokerUrl = "mqtts://central.example.net".parse().unwrap();
        assert_eq!(url, BrokerUrl::new(true, "central.example.net", 8883));
        let url: BrokerUrl = "mqtt://127.0.0.1:18830/".parse().unwrap();
        assert_eq!(url, BrokerUrl::new(false, "127.0.0.1", 18830));
        assert_eq!(url.to_string(), "mqtt://127.0.0.1:18830");
        let url: BrokerUrl = "mqtts://[::1]:9883".parse().unwrap();
        assert_eq!(url.host, "::1");
        assert_eq!(url.to_string(), "mqtts://[::1]:9883");
        for bad in [
            "tcp://host",
            "mqtt://",
            "mqtt://host:0",
            "mqtt://host:99999",
            "mqtt://user@host",
            "mqtt://host/path",
        ] {
            let err = bad.parse::<BrokerUrl>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn tls_needs_a_usable_ca() {
        let endpoint = Endpoint {
            url: "mqtts://localhost".parse().unwrap(),
            username: "u".into(),
            password: Secret::new("p".into()),
            ca_pem: None,
        };
        let session = Session {
            client_id: "c".into(),
            keep_alive: Duration::from_secs(30),
            will: None,
            subscriptions: Vec::new(),
        };
        assert!(matches!(
            options(&endpoint, &session),
            Err(MqttError::MissingCa { .. })
        ));
        assert!(matches!(tls_config("not a pem"), Err(MqttError::Ca(_))));
        // The password never shows in a Debug print.
        assert!(!format!("{endpoint:?}").contains("\"p\""));
    }

    #[test]
    fn backoff_grows_to_a_cap_with_jitter() {
        assert!(backoff(0) <= BACKOFF_FIRST && backoff(0) >= BACKOFF_FIRST / 2);
        assert!(backoff(3) >= Duration::from_secs(1));
        for failures in [10, 20, u32::MAX] {
            let pause = backoff(failures);
            assert!(
                pause <= BACKOFF_MAX && pause >= BACKOFF_MAX / 2,
                "{pause:?}"
            );
        }
    }
}
