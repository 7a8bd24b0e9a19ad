//! What `easyisp-central doctor` learns about the broker, read from the files `serve` keeps
//! in `DATA_DIR/mosquitto/` and `DATA_DIR/tls/`, from `/proc`, and by logging in to the
//! managed broker with central's own account. Nothing here writes a file or signals a process.

use super::files::Paths;
use super::{CENTRAL_USERNAME, local_dial, monitor, process, tls};
use easyisp_mqtt::{BrokerUrl, Endpoint, LinkEvent, Session};
use easyisp_protocol::Secret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use tls::ServerCertFacts;

/// What `serve` last ran, from `DATA_DIR/mosquitto/serve.info` (written at every start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Central ran Mosquitto itself.
    pub managed: bool,
    /// The URL agents are told to dial (managed: the advertised one).
    pub url: String,
}

impl Record {
    pub fn render(&self) -> String {
        format!(
            "# Written by easyisp-central serve at every start; read by easyisp-central doctor.\n\
             mode {}\nurl {}\n",
            if self.managed { "managed" } else { "external" },
            self.url
        )
    }

    pub fn parse(text: &str) -> Option<Record> {
        let mut managed = None;
        let mut url = None;
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            match line.split_once(' ') {
                Some(("mode", "managed")) => managed = Some(true),
                Some(("mode", "external")) => managed = Some(false),
                Some(("url", value)) => url = Some(value.trim().to_string()),
                _ => {}
            }
        }
        Some(Record {
            managed: managed?,
            url: url?,
        })
    }
}

/// The record `serve` left, if any.
pub fn record(data_dir: &Path) -> Option<Record> {
    Record::parse(&std::fs::read_to_string(Paths::new(data_dir).record).ok()?)
}

/// The managed listener's address from `mosquitto.conf` (`listener PORT HOST`).
pub fn listener(data_dir: &Path) -> Result<SocketAddr, String> {
    let conf = Paths::new(data_dir).conf;
    let text = std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    parse_listener(&text).ok_or_else(|| format!("{} names no listener", conf.display()))
}

fn parse_listener(conf: &str) -> Option<SocketAddr> {
    conf.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "listener" {
            return None;
        }
        let port: u16 = words.next()?.parse().ok()?;
        let host: std::net::IpAddr = words.next()?.parse().ok()?;
        Some(SocketAddr::new(host, port))
    })
}

/// The pid of the Mosquitto started with this data directory's config, when it runs.
pub fn mosquitto_pid(data_dir: &Path) -> Option<i32> {
    monitor::running_mosquitto(&Paths::new(data_dir))
}

/// The parent of `pid` (central, for the managed Mosquitto), from `/proc/PID/stat`.
pub fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow the last ") ".
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Where `serve` would find Mosquitto.
pub fn mosquitto_binary() -> Result<PathBuf, super::BrokerError> {
    process::find_mosquitto()
}

/// The files that must stay private (mode 0600): central's broker password and the keys.
pub fn private_files(data_dir: &Path) -> Vec<PathBuf> {
    let paths = Paths::new(data_dir);
    vec![
        paths.central_secret,
        paths.tls_dir.join("ca.key"),
        paths.tls_dir.join("server.key"),
    ]
}

/// The CA and server certificate paths.
pub fn certificate_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let tls_dir = Paths::new(data_dir).tls_dir;
    (tls_dir.join("ca.crt"), tls_dir.join("server.crt"))
}

/// Reads the server certificate and checks it against the CA on disk.
pub fn server_certificate(data_dir: &Path) -> Result<ServerCertFacts, String> {
    let (ca, server) = certificate_paths(data_dir);
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    tls::server_facts(&read(&server)?, &read(&ca)?)
}

/// A host name as the certificate lists it.
pub fn normalise_host(host: &str) -> String {
    tls::normalise(host)
}

/// Logs in to the managed broker at `listen` with central's own account over TLS, trusting
/// only the CA on disk; `Err` says why it could not within `timeout`.
pub async fn login(data_dir: &Path, listen: SocketAddr, timeout: Duration) -> Result<(), String> {
    let paths = Paths::new(data_dir);
    let password = std::fs::read_to_string(&paths.central_secret)
        .map_err(|e| format!("{}: {e}", paths.central_secret.display()))?;
    let (ca, _) = certificate_paths(data_dir);
    let ca_pem = std::fs::read_to_string(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    let endpoint = Endpoint {
        url: BrokerUrl::new(true, local_dial(listen).to_string(), listen.port()),
        username: CENTRAL_USERNAME.to_string(),
        password: Secret::new(password.trim().to_string()),
        ca_pem: Some(ca_pem),
    };
    let session = Session {
        client_id: format!(
            "easyisp-central-doctor-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ),
        keep_alive: Duration::from_secs(30),
        will: None,
        subscriptions: Vec::new(),
    };
    let cancel = CancellationToken::new();
    let mut link =
        easyisp_mqtt::connect(&endpoint, session, cancel.clone()).map_err(|e| e.to_string())?;
    let outcome = tokio::time::timeout(timeout, async {
        loop {
            match link.events.recv().await {
                Some(LinkEvent::Connected) => return Ok(()),
                Some(LinkEvent::Disconnected { reason }) => return Err(reason),
                Some(LinkEvent::Message { .. }) => {}
                None => return Err("the connection task stopped".to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())));
    cancel.cancel();
    // A clean DISCONNECT when connected; give up on it after a moment.
    let _ = tokio::time::timeout(Duration::from_secs(2), &mut link.task).await;
    link.task.abort();
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_round_trips() {
        let record = Record {
            managed: true,
            url: "mqtts://central.example.net:8883".into(),
        };
        assert_eq!(Record::parse(&record.render()), Some(record));
        assert_eq!(Record::parse("mode managed\n"), None);
    }

    #[test]
    fn the_listener_is_read_from_the_config() {
        let conf = "persistence false\n\nlistener 8883 0.0.0.0\ncertfile /x\n";
        assert_eq!(parse_listener(conf), Some("0.0.0.0:8883".parse().unwrap()));
        assert_eq!(
            parse_listener("listener 1883 ::1\n"),
            Some("[::1]:1883".parse().unwrap())
        );
        assert_eq!(parse_listener("log_dest stderr\n"), None);
    }
}
